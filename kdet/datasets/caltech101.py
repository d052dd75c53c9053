"""Caltech-101 object categories with their bounding boxes.

Reference: L. Fei-Fei, R. Fergus, P. Perona, "Learning generative visual models from few
training examples", CVPR 2004 Workshop. Data: CC BY 4.0, https://data.caltech.edu.

The official ``caltech-101.zip`` holds ``caltech-101/101_ObjectCategories.tar.gz``
(``101_ObjectCategories/<category>/image_NNNN.jpg``) and ``caltech-101/Annotations.tar``
(``Annotations/<annotation folder>/annotation_NNNN.mat``, one box per image in
``box_coord = [[y1, y2, x1, x2]]``). Only the asked categories are extracted.

Folder layout of ``out_dir``::

    downloads/caltech-101.zip
    downloads/caltech-101/{101_ObjectCategories.tar.gz, Annotations.tar}
    101_ObjectCategories/<category>/image_NNNN.jpg
    Annotations/<annotation folder>/annotation_NNNN.mat
    records.json

Example:
    >>> from kdet.datasets import caltech101
    >>> records = caltech101.fetch("data/caltech101", categories=("airplanes",))  # doctest: +SKIP
    >>> records.summary()["classes"]  # doctest: +SKIP
    {'airplanes': 800}
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.io

from kdet.datasets import download as dl
from kdet.datasets.checks import check_boxes, check_on_invalid, image_size, log_skipped
from kdet.datasets.records import Record, RecordSet, assign_splits
from kdet.errors import AnnotationError

URL = "https://data.caltech.edu/records/mzrjq-6wc02/files/caltech-101.zip"
DEFAULT_CATEGORIES = ("airplanes", "Faces", "Motorbikes")
# Image folder -> annotation folder where the original names differ.
ANNOTATION_FOLDERS = {
    "airplanes": "Airplanes_Side_2",
    "Faces": "Faces_2",
    "Faces_easy": "Faces_3",
    "Motorbikes": "Motorbikes_16",
}
IMAGES_ARCHIVE = "caltech-101/101_ObjectCategories.tar.gz"
ANNOTATIONS_ARCHIVE = "caltech-101/Annotations.tar"
IMAGES_DIR = "101_ObjectCategories"
ANNOTATIONS_DIR = "Annotations"


def annotation_folder(category: str) -> str:
    """Folder of a category under ``Annotations/`` (``airplanes`` -> ``Airplanes_Side_2``)."""
    return ANNOTATION_FOLDERS.get(category, category)


def read_box(mat_path: str | os.PathLike) -> list[float]:
    """Read the box of one ``annotation_NNNN.mat`` as absolute ``[x1, y1, x2, y2]``.

    Raises:
        AnnotationError: the file is missing, not a MATLAB file, or has no 4-number
            ``box_coord``.

    Example:
        >>> read_box("Annotations/Airplanes_Side_2/annotation_0001.mat")  # doctest: +SKIP
        [49.0, 30.0, 349.0, 137.0]
    """
    try:
        content = scipy.io.loadmat(mat_path, variable_names=["box_coord"])
    except FileNotFoundError:
        raise AnnotationError(mat_path, "annotation file is missing") from None
    except Exception as err:  # scipy.io raises assorted types (IndexError, ...) on garbage
        raise AnnotationError(mat_path, f"not a readable MATLAB file ({err!r})") from None
    if "box_coord" not in content:
        raise AnnotationError(mat_path, "no 'box_coord' variable")
    try:
        coords = np.asarray(content["box_coord"], dtype=np.float64).reshape(-1)
    except (ValueError, TypeError) as err:
        raise AnnotationError(mat_path, f"'box_coord' is not numeric ({err})") from None
    if coords.size != 4:
        raise AnnotationError(mat_path, f"'box_coord' has {coords.size} values, expected 4")
    y1, y2, x1, x2 = coords.tolist()
    return [x1, y1, x2, y2]


def parse(
    root: str | os.PathLike,
    categories: Sequence[str] = DEFAULT_CATEGORIES,
    *,
    on_invalid: str = "skip",
) -> RecordSet:
    """Build the records of extracted Caltech-101 folders under ``root``.

    Args:
        root: folder holding ``101_ObjectCategories/`` and ``Annotations/``.
        categories: image folder names; class ids follow this order.
        on_invalid: ``"skip"`` or ``"raise"`` for an empty or out-of-image box (see
            :mod:`kdet.datasets.checks`).

    Returns:
        A :class:`RecordSet` (splits not assigned), one record per image.

    Raises:
        AnnotationError: an image has no annotation file, or a ``.mat`` is malformed.

    Example:
        >>> parse("data/caltech101", ["airplanes"]).summary()["images"]  # doctest: +SKIP
        800
    """
    check_on_invalid(on_invalid)
    root = Path(root)
    records, total = [], 0
    for class_id, category in enumerate(categories):
        image_dir = root / IMAGES_DIR / category
        annotation_dir = root / ANNOTATIONS_DIR / annotation_folder(category)
        for image_path in sorted(image_dir.glob("*.jpg")):
            total += 1
            number = image_path.stem.removeprefix("image_")
            mat_path = annotation_dir / f"annotation_{number}.mat"
            if not mat_path.is_file():
                raise AnnotationError(image_path, f"no annotation file {mat_path}")
            width, height = image_size(image_path)
            boxes = check_boxes([read_box(mat_path)], width, height, mat_path, on_invalid)
            if boxes is None:
                continue
            relative = image_path.relative_to(root).as_posix()
            records.append(Record(relative, width, height, boxes, [class_id]))
    log_skipped("caltech101", total - len(records), total)
    return RecordSet("caltech101", list(categories), records, root)


def fetch(
    out_dir: str | os.PathLike,
    *,
    categories: Sequence[str] = DEFAULT_CATEGORIES,
    fractions: dict[str, float] | None = None,
    seed: int = 0,
    on_invalid: str = "skip",
    mirror: str | None = None,
    progress: bool = True,
) -> RecordSet:
    """Download Caltech-101, extract the asked categories and write ``records.json``.

    A second call on the same folder reuses the downloaded archive.

    Args:
        out_dir: dataset folder (layout in the module docstring).
        categories: image folder names of the classes, e.g. ``("airplanes", "Faces")``.
        fractions: split fractions, default ``{"train": 0.8, "test": 0.2}``.
        seed: seed of the split.
        on_invalid: ``"skip"`` (default) or ``"raise"`` for invalid boxes. The real
            ``airplanes/image_0118`` has a zero-height box and is skipped by default.
        mirror: mirror folder or base URL (default: ``KDET_MIRROR``).
        progress: show download progress bars.

    Returns:
        The saved :class:`RecordSet`.

    Raises:
        ValueError: a category is not in the archive (the message lists those that are).

    Example:
        >>> fetch("data/caltech101").summary()["images"]  # doctest: +SKIP
        2032
    """
    categories = list(categories)
    if not categories or len(set(categories)) != len(categories):
        raise ValueError(f"categories must be distinct and non-empty. Received: {categories}")
    check_on_invalid(on_invalid)
    out_dir = Path(out_dir)
    downloads = out_dir / "downloads"
    archive = dl.download(
        URL, downloads / "caltech-101.zip", verify=dl.verify_zip, progress=progress, mirror=mirror
    )
    inner = (IMAGES_ARCHIVE, ANNOTATIONS_ARCHIVE)
    dl.extract(archive, downloads, members=lambda name: name in inner)

    seen = set()
    image_prefixes = tuple(f"{IMAGES_DIR}/{c}/" for c in categories)

    def wanted_image(name: str) -> bool:
        parts = name.split("/")
        if len(parts) > 2 and parts[0] == IMAGES_DIR:
            seen.add(parts[1])
        return name.startswith(image_prefixes)

    dl.extract(downloads / IMAGES_ARCHIVE, out_dir, members=wanted_image)
    missing = [c for c in categories if c not in seen]
    if missing:
        raise ValueError(f"categories {missing} are not in {URL}. Available: {sorted(seen)}")
    annotation_prefixes = tuple(f"{ANNOTATIONS_DIR}/{annotation_folder(c)}/" for c in categories)
    dl.extract(
        downloads / ANNOTATIONS_ARCHIVE,
        out_dir,
        members=lambda name: name.startswith(annotation_prefixes),
    )
    records = parse(out_dir, categories, on_invalid=on_invalid)
    fractions = fractions if fractions is not None else {"train": 0.8, "test": 0.2}
    records.records = assign_splits(records.records, fractions, seed)
    records.save(out_dir)
    return records
