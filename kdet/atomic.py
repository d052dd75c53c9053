"""Atomic writes: a file or folder appears under its final name complete, or not at all.

Everything is written to a hidden ``.NAME.*.partial`` sibling (same folder, so the final
``os.replace`` is a rename on one file system) and renamed into place when done; an
interrupted or failed write removes its staging copy and leaves any older version intact.

Example:
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> write_text(folder / "metrics.json", '{"mAP50": 0.9}')
    >>> (folder / "metrics.json").read_text()
    '{"mAP50": 0.9}'
    >>> sorted(p.name for p in folder.iterdir())
    ['metrics.json']
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def write_file(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Call ``write(file)`` on a binary staging file beside ``path``, then rename it to
    ``path`` (mode 0644; parent folders are created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, staging = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            write(file)
        os.chmod(staging, 0o644)  # mkstemp's 0600 would hide the file from other users
        os.replace(staging, path)
    finally:
        if os.path.exists(staging):
            os.remove(staging)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    write_file(path, lambda file: file.write(data))


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    write_bytes(path, text.encode("utf-8"))


def copy_file(source: str | os.PathLike, path: str | os.PathLike) -> None:
    """Copy ``source`` to ``path`` atomically."""
    with open(source, "rb") as data:
        write_file(path, lambda file: shutil.copyfileobj(data, file))


def replace_folder(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Call ``write(staging)`` to fill a staging folder beside ``path``, then put it in
    ``path``'s place (an older ``path`` is removed only once the new one is complete)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        write(staging)
        os.chmod(staging, 0o755)  # mkdtemp's 0700 likewise
        if path.exists():
            shutil.rmtree(path)
        os.replace(staging, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
