"""Real images from the dataset mirror, copied out of the raccoon archive for a test."""

import os
import zipfile
from pathlib import Path

from tests.conftest import mirror_folder

RACCOON_ZIP = "github.com/datitran/raccoon_dataset/archive/refs/heads/master.zip"


def raccoon_images(dst, count: int) -> list[Path]:
    """Copy the first ``count`` raccoon JPEGs of the mirror into ``dst`` (no mirror: fails
    in CI, skips elsewhere; see :func:`tests.conftest.mirror_path`)."""
    mirror = mirror_folder()
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    paths = []
    with zipfile.ZipFile(os.path.join(mirror, RACCOON_ZIP)) as archive:
        names = sorted(n for n in archive.namelist() if n.endswith(".jpg"))[:count]
        for name in names:
            path = dst / Path(name).name
            path.write_bytes(archive.read(name))
            paths.append(path)
    return paths
