"""Raccoon dataset of Dat Tran: 200 images, Pascal VOC boxes, the author's 160/40 split.

Reference: https://github.com/datitran/raccoon_dataset (MIT licence).

The GitHub archive holds ``raccoon_dataset-master/images/raccoon-N.jpg``,
``annotations/raccoon-N.xml`` (Pascal VOC) and ``data/{train,test}_labels.csv`` (the
author's split). XML is parsed with ``defusedxml``: a DTD or entity declaration is an
error, never expanded.

Folder layout of ``out_dir``::

    downloads/raccoon_dataset-master.zip
    raccoon_dataset-master/images/raccoon-N.jpg
    raccoon_dataset-master/annotations/raccoon-N.xml
    raccoon_dataset-master/data/{train,test}_labels.csv
    records.json

Example:
    >>> from kdet.datasets import raccoon
    >>> raccoon.fetch("data/raccoon").summary()  # doctest: +SKIP
    {'images': 200, 'boxes': 217, 'classes': {'raccoon': 217}}
"""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path

from kdet.datasets import download as dl
from kdet.datasets.checks import (
    check_boxes,
    check_on_invalid,
    image_size,
    log_skipped,
    skip_or_raise,
)
from kdet.datasets.records import Record, RecordSet, assign_splits
from kdet.datasets.voc import VocAnnotation, parse_voc  # noqa: F401 (re-exported)
from kdet.errors import AnnotationError

logger = logging.getLogger(__name__)

URL = "https://github.com/datitran/raccoon_dataset/archive/refs/heads/master.zip"
TOP = "raccoon_dataset-master"
CLASS_NAMES = ("raccoon",)
SPLIT_FILES = {"train": "data/train_labels.csv", "test": "data/test_labels.csv"}
_KEPT = ("images/", "annotations/", "data/", "LICENSE", "README.md")


def read_split(csv_path: str | os.PathLike) -> set[str]:
    """Image file names listed in one of the author's ``*_labels.csv`` files.

    Raises:
        AnnotationError: the file is missing, not UTF-8 or has no ``filename`` column.
    """
    try:
        with open(csv_path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or "filename" not in reader.fieldnames:
                raise AnnotationError(csv_path, f"no 'filename' column in {reader.fieldnames}")
            return {row["filename"] for row in reader}
    except FileNotFoundError:
        raise AnnotationError(csv_path, "split file is missing") from None
    except UnicodeDecodeError as err:
        raise AnnotationError(csv_path, f"not UTF-8 text ({err})") from None


def parse(
    root: str | os.PathLike,
    *,
    fractions: dict[str, float] | None = None,
    seed: int = 0,
    on_invalid: str = "skip",
) -> RecordSet:
    """Build the raccoon records of an extracted ``raccoon_dataset-master`` under ``root``.

    Image sizes: the image file is trusted over the XML's ``<size>``. Boxes are drawn
    on the image, so they live in its pixel grid; when ``<size>`` is missing or
    disagrees (it is metadata the annotation tool copies), the real size is used and a
    warning says so.

    Args:
        root: folder holding ``raccoon_dataset-master/``.
        fractions: split for images in neither of the author's CSV files (default
            ``{"train": 0.8, "test": 0.2}``); the author's split is always kept.
        seed: seed of that split.
        on_invalid: ``"skip"`` or ``"raise"`` for a box outside its image, an empty
            box or a class other than ``raccoon``.

    Raises:
        AnnotationError: an XML is malformed or hostile, an image has no XML, or an
            image is in both split files.

    Example:
        >>> parse("data/raccoon").split("test").summary()["images"]  # doctest: +SKIP
        40
    """
    check_on_invalid(on_invalid)
    root = Path(root)
    top = root / TOP
    split_of = {}
    for split, name in SPLIT_FILES.items():
        for filename in read_split(top / name):
            if split_of.get(filename, split) != split:
                raise AnnotationError(top / name, f"{filename} is also in another split file")
            split_of[filename] = split
    records = []
    images = sorted((top / "images").glob("*.jpg"))
    for image_path in images:
        xml_path = top / "annotations" / f"{image_path.stem}.xml"
        if not xml_path.is_file():
            raise AnnotationError(image_path, f"no annotation file {xml_path}")
        voc = parse_voc(xml_path)
        width, height = image_size(image_path)
        if (voc.width, voc.height) != (width, height):
            logger.warning(
                "%s: <size> says %sx%s but the image is %dx%d; using the image's size",
                xml_path,
                voc.width,
                voc.height,
                width,
                height,
            )
        unknown = sorted(set(voc.names) - set(CLASS_NAMES))
        if unknown:
            skip_or_raise(AnnotationError(xml_path, f"unknown class names {unknown}"), on_invalid)
            continue
        boxes = check_boxes(voc.boxes, width, height, xml_path, on_invalid)
        if boxes is None:
            continue
        classes = [CLASS_NAMES.index(n) for n in voc.names]
        relative = image_path.relative_to(root).as_posix()
        records.append(
            Record(relative, width, height, boxes, classes, split_of.get(image_path.name))
        )
    log_skipped("raccoon", len(images) - len(records), len(images))
    fractions = fractions if fractions is not None else {"train": 0.8, "test": 0.2}
    records = assign_splits(records, fractions, seed, keep_existing=True)
    return RecordSet("raccoon", list(CLASS_NAMES), records, root)


def fetch(
    out_dir: str | os.PathLike,
    *,
    fractions: dict[str, float] | None = None,
    seed: int = 0,
    on_invalid: str = "skip",
    mirror: str | None = None,
    progress: bool = True,
) -> RecordSet:
    """Download the raccoon archive, extract it and write ``records.json``.

    A second call on the same folder reuses the downloaded archive.

    Args:
        out_dir: dataset folder (layout in the module docstring).
        fractions: split of images outside the author's split (see :func:`parse`).
        seed: seed of that split.
        on_invalid: ``"skip"`` or ``"raise"`` (see :func:`parse`).
        mirror: mirror folder or base URL (default: ``KDET_MIRROR``).
        progress: show a download progress bar.

    Returns:
        The saved :class:`RecordSet`.

    Example:
        >>> fetch("data/raccoon").split("train").summary()["images"]  # doctest: +SKIP
        160
    """
    check_on_invalid(on_invalid)
    out_dir = Path(out_dir)
    archive = dl.download(
        URL,
        out_dir / "downloads" / f"{TOP}.zip",
        verify=dl.verify_zip,
        progress=progress,
        mirror=mirror,
    )
    kept = tuple(f"{TOP}/{name}" for name in _KEPT)
    dl.extract(archive, out_dir, members=lambda name: name.startswith(kept))
    records = parse(out_dir, fractions=fractions, seed=seed, on_invalid=on_invalid)
    records.save(out_dir)
    return records
