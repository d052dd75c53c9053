"""Dataset sources, one module each, all returning a :class:`RecordSet`.

``fetch(name, out_dir, **options)`` downloads (or generates) a dataset into ``out_dir``:
archives and CSVs under ``out_dir/downloads/``, images under ``out_dir/``, the records
in ``out_dir/records.json``. A second call reuses the downloads. Set ``KDET_MIRROR`` (or
pass ``mirror=``) to read from a mirror instead of the canonical addresses.

Example:
    >>> from kdet.datasets import fetch
    >>> fetch("shapes", "data/shapes", num_images=8, image_size=64).summary()["images"]
    8
"""

from __future__ import annotations

import os
from collections.abc import Callable

from kdet.datasets import caltech101, open_images, raccoon, shapes
from kdet.datasets.records import RecordSet

SOURCES: dict[str, Callable[..., RecordSet]] = {
    "caltech101": caltech101.fetch,
    "raccoon": raccoon.fetch,
    "open_images": open_images.fetch,
    "shapes": shapes.fetch,
}


def fetch(name: str, out_dir: str | os.PathLike, **options) -> RecordSet:
    """Fetch the dataset ``name`` into ``out_dir`` and return its saved records.

    Args:
        name: one of ``SOURCES`` (``caltech101``, ``raccoon``, ``open_images``, ``shapes``).
        out_dir: dataset folder.
        **options: keyword arguments of the source's ``fetch`` (e.g. ``categories=`` for
            ``caltech101``, ``classes=``/``split=`` for ``open_images``).

    Raises:
        ValueError: unknown ``name`` (the message lists the choices).

    Example:
        >>> fetch("raccoon", "data/raccoon").summary()["boxes"]  # doctest: +SKIP
        217
    """
    if name not in SOURCES:
        raise ValueError(f"Unknown dataset {name!r}. Choices: {sorted(SOURCES)}")
    return SOURCES[name](out_dir, **options)
