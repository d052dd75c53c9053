"""Dataset sources, one module each, all returning a :class:`RecordSet`.

``fetch(source, out_dir, **options)`` downloads (or generates) a dataset into ``out_dir``:
archives and CSVs under ``out_dir/downloads/``, images under ``out_dir/``, the records
in ``out_dir/records.json``. A second call reuses the downloads. Set ``KDET_MIRROR`` (or
pass ``mirror=``) to read from a mirror instead of the canonical addresses.

Besides the built-in datasets, ``source`` may be a format of a dataset the user brings:
``voc``, ``coco``, ``yolo`` or ``tfds``, with ``path=`` (a folder, a file, an
``https://`` archive, or for ``tfds`` a TFDS name). The images are copied (hard-linked
where possible) into ``out_dir/images/`` and ``out_dir/import_report.json`` says what
was repaired or skipped (see :mod:`kdet.datasets.folder`).

Example:
    >>> from kdet.datasets import fetch
    >>> fetch("shapes", "data/shapes", num_images=8, image_size=64).summary()["images"]
    8
"""

from __future__ import annotations

import os
from collections.abc import Callable

from kdet.datasets import caltech101, coco, open_images, raccoon, shapes, tfds_source, voc, yolo
from kdet.datasets.folder import detect_format
from kdet.datasets.records import RecordSet

SOURCES: dict[str, Callable[..., RecordSet]] = {
    "caltech101": caltech101.fetch,
    "raccoon": raccoon.fetch,
    "open_images": open_images.fetch,
    "shapes": shapes.fetch,
    "voc": voc.fetch,
    "coco": coco.fetch,
    "yolo": yolo.fetch,
    "tfds": tfds_source.fetch,
}
BUILT_IN = ("caltech101", "raccoon", "open_images", "shapes")
FORMATS = ("voc", "coco", "yolo", "tfds")

__all__ = ["BUILT_IN", "FORMATS", "SOURCES", "RecordSet", "detect_format", "fetch"]


def fetch(source: str, out_dir: str | os.PathLike, /, **options) -> RecordSet:
    """Fetch the dataset ``source`` into ``out_dir`` and return its saved records.

    Args:
        source: one of ``SOURCES``: a built-in dataset (``caltech101``, ``raccoon``,
            ``open_images``, ``shapes``) or a format (``voc``, ``coco``, ``yolo``,
            ``tfds``) whose ``path=`` option names the data.
        out_dir: dataset folder.
        **options: keyword arguments of the source's ``fetch`` (e.g. ``categories=`` for
            ``caltech101``, ``classes=``/``split=`` for ``open_images``; ``path=``,
            ``fractions=``, ``seed=``, ``classes=``, ``on_invalid=`` for the formats).

    Raises:
        ValueError: unknown ``source`` (the message lists the choices).

    Example:
        >>> fetch("raccoon", "data/raccoon").summary()["boxes"]  # doctest: +SKIP
        217
        >>> fetch("yolo", "data/raw/mine", path="datasets/mine/data.yaml")  # doctest: +SKIP
    """
    if source not in SOURCES:
        raise ValueError(f"Unknown dataset {source!r}. Choices: {sorted(SOURCES)}")
    return SOURCES[source](out_dir, **options)
