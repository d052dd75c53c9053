"""Real images from the dataset mirror, copied out of the raccoon archive for a test."""

import os
import zipfile
from pathlib import Path

from tests.conftest import mirror_or_skip

RACCOON_ZIP = "github.com/datitran/raccoon_dataset/archive/refs/heads/master.zip"


def raccoon_images(dst, count: int) -> list[Path]:
    """Copy the first ``count`` raccoon JPEGs of the mirror into ``dst`` (skips without one)."""
    mirror = mirror_or_skip()
    if "://" in mirror:
        import pytest

        pytest.skip("these tests read the mirror as a folder")
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
