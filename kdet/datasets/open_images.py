"""A class subset of Open Images boxes, one image download each.

Reference: A. Kuznetsova et al., "The Open Images Dataset V4", IJCV 2020. Annotations
CC BY 4.0 (Google), images CC BY 2.0 (per image, Flickr).

The box CSV of a split is streamed and only the rows of the asked classes are kept (the
train CSV is 2.3 GB), in a filtered CSV written atomically and reused by later calls.
Then each chosen image is downloaded (in a thread pool) and checked to decode.
Normalised ``XMin, XMax, YMin, YMax`` become absolute ``xyxy`` with the real image size.

Folder layout of ``out_dir``::

    downloads/class-descriptions-boxable.csv
    downloads/<split>-annotations-bbox.<classes>.csv    (filtered rows)
    <split>/<ImageID>.jpg
    records.json

Example:
    >>> from kdet.datasets import open_images
    >>> open_images.fetch("data/open_images").summary()  # doctest: +SKIP
    {'images': 200, 'boxes': 374, 'classes': {'Person': 346, 'Backpack': 28}}
"""

from __future__ import annotations

import collections
import concurrent.futures
import csv
import difflib
import io
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from kdet import atomic
from kdet.datasets import download as dl
from kdet.datasets.checks import check_boxes, check_on_invalid, image_size, log_skipped
from kdet.datasets.records import Record, RecordSet, assign_splits
from kdet.errors import AnnotationError, DownloadError

CLASSES_URL = "https://storage.googleapis.com/openimages/v5/class-descriptions-boxable.csv"
ANNOTATION_URLS = {
    "train": "https://storage.googleapis.com/openimages/v6/oidv6-train-annotations-bbox.csv",
    "validation": "https://storage.googleapis.com/openimages/v5/validation-annotations-bbox.csv",
    "test": "https://storage.googleapis.com/openimages/v5/test-annotations-bbox.csv",
}
IMAGE_URL = "https://s3.amazonaws.com/open-images-dataset/{split}/{image_id}.jpg"
DEFAULT_CLASSES = ("Person", "Backpack")
BOX_COLUMNS = ("ImageID", "LabelName", "XMin", "XMax", "YMin", "YMax")


def read_class_descriptions(csv_path: str | os.PathLike) -> dict[str, str]:
    """``{display name: label id}`` from ``class-descriptions-boxable.csv`` (no header).

    Raises:
        AnnotationError: a row has not exactly two fields, or the file is not UTF-8.
    """
    names = {}
    try:
        with open(csv_path, newline="", encoding="utf-8") as f:
            for line, row in enumerate(csv.reader(f), start=1):
                if len(row) != 2:
                    raise AnnotationError(
                        csv_path, f"line {line} has {len(row)} fields, expected 2"
                    )
                label, name = row
                names[name] = label
    except UnicodeDecodeError as err:
        raise AnnotationError(csv_path, f"not UTF-8 text ({err})") from None
    return names


def resolve_classes(names: Sequence[str], descriptions: dict[str, str]) -> list[str]:
    """Label ids of display names; an unknown name raises ``ValueError`` with close matches.

    Example:
        >>> resolve_classes(["Person"], {"Person": "/m/01g317"})
        ['/m/01g317']
    """
    labels = []
    by_lower = {name.lower(): name for name in descriptions}
    for name in names:
        if name not in descriptions:
            close = difflib.get_close_matches(name.lower(), list(by_lower), n=5, cutoff=0.6)
            hint = [by_lower[c] for c in close]
            raise ValueError(
                f"Unknown Open Images class {name!r}. Close matches: {hint or 'none'} "
                f"(display names are case-sensitive; see {CLASSES_URL})"
            )
        labels.append(descriptions[name])
    return labels


def filter_rows(
    lines: Iterable[str], labels: Sequence[str], source: str
) -> tuple[list[str], list[list[str]]]:
    """Header and the rows of ``lines`` (a box CSV) whose ``LabelName`` is in ``labels``.

    Raises:
        AnnotationError: the header lacks a box column, or a row has the wrong length.
    """
    reader = csv.reader(lines)
    header = next(reader, None)
    missing = [c for c in BOX_COLUMNS if c not in (header or [])]
    if missing:
        raise AnnotationError(source, f"CSV header {header} lacks columns {missing}")
    label_index = header.index("LabelName")
    wanted = set(labels)
    rows = []
    for row in reader:
        if len(row) != len(header):
            raise AnnotationError(
                source, f"line {reader.line_num} has {len(row)} fields, expected {len(header)}"
            )
        if row[label_index] in wanted:
            rows.append(row)
    return header, rows


def filtered_annotations(
    split: str, labels: Sequence[str], names: Sequence[str], downloads: Path, **download_options
) -> Path:
    """Stream the box CSV of ``split`` and keep the rows of ``labels`` (reused if present)."""
    slug = "+".join(re.sub(r"[^A-Za-z0-9]+", "_", n) for n in names)
    path = downloads / f"{split}-annotations-bbox.{slug}.csv"
    if not path.is_file():
        url = ANNOTATION_URLS[split]
        header, rows = filter_rows(dl.iter_lines(url, **download_options), labels, url)
        text = io.StringIO(newline="")
        csv.writer(text).writerows([header, *rows])
        atomic.write_text(path, text.getvalue())
    return path


def choose_images(
    boxes_by_image: dict[str, list], labels: Sequence[str], max_images_per_class, seed: int
) -> list[str]:
    """Image ids to keep: up to ``max_images_per_class`` images holding each label.

    The choice is a seeded shuffle of the sorted ids, so it is the same on every run. An
    image chosen for one class keeps its boxes of the other classes too.
    """
    ids = sorted(boxes_by_image)
    if max_images_per_class is None:
        return ids
    order = [ids[i] for i in np.random.default_rng(seed).permutation(len(ids))]
    chosen = set()
    for label in labels:
        holding = [i for i in order if any(b[0] == label for b in boxes_by_image[i])]
        chosen.update(holding[:max_images_per_class])
    return sorted(chosen)


def _download_images(
    image_ids: Sequence[str], split: str, out_dir: Path, workers: int, progress: bool, mirror
) -> None:
    folder = out_dir / split

    def one(image_id: str) -> Path:
        url = IMAGE_URL.format(split=split, image_id=image_id)
        return dl.download(
            url, folder / f"{image_id}.jpg", verify=dl.verify_image, progress=False, mirror=mirror
        )

    errors = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(one, image_id) for image_id in image_ids]
        done = concurrent.futures.as_completed(futures)
        for future in tqdm(done, total=len(futures), desc="images", disable=not progress):
            if future.exception() is not None:
                errors.append(future.exception())
    if errors:
        raise DownloadError(
            IMAGE_URL.format(split=split, image_id="*"),
            f"{len(errors)} of {len(image_ids)} images failed; first: {errors[0]}",
        )


def fetch(
    out_dir: str | os.PathLike,
    *,
    classes: Sequence[str] = DEFAULT_CLASSES,
    split: str = "validation",
    max_images_per_class: int | None = None,
    fractions: dict[str, float] | None = None,
    seed: int = 0,
    workers: int = 8,
    on_invalid: str = "skip",
    mirror: str | None = None,
    progress: bool = True,
) -> RecordSet:
    """Fetch the Open Images boxes of ``classes`` in ``split`` and write ``records.json``.

    A second call on the same folder reuses the class list, the filtered CSV and the
    images already downloaded.

    Args:
        out_dir: dataset folder (layout in the module docstring).
        classes: display names, e.g. ``("Person", "Backpack")``; class ids follow this
            order.
        split: ``"validation"``, ``"test"`` or ``"train"`` (Open Images' own split).
        max_images_per_class: keep at most this many images holding each class
            (a seeded, deterministic choice); ``None`` keeps all.
        fractions: kdet's train/test split of the fetched images (default
            ``{"train": 0.8, "test": 0.2}``).
        seed: seed of the image choice and the split.
        workers: parallel image downloads.
        on_invalid: ``"skip"`` or ``"raise"`` for a box outside ``[0, 1]`` or empty.
        mirror: mirror folder or base URL (default: ``KDET_MIRROR``).
        progress: show progress bars.

    Returns:
        The saved :class:`RecordSet`.

    Raises:
        ValueError: unknown split or class name (with close matches), bad
            ``max_images_per_class``.

    Example:
        >>> fetch("data/oi", classes=("Backpack",), max_images_per_class=10)  # doctest: +SKIP
    """
    if split not in ANNOTATION_URLS:
        raise ValueError(f"split must be one of {list(ANNOTATION_URLS)}. Received: split={split!r}")
    if max_images_per_class is not None and max_images_per_class < 1:
        raise ValueError(
            f"max_images_per_class must be None or >= 1. Received: {max_images_per_class}"
        )
    classes = list(classes)
    if not classes or len(set(classes)) != len(classes):
        raise ValueError(f"classes must be distinct and non-empty. Received: {classes}")
    check_on_invalid(on_invalid)
    out_dir = Path(out_dir)
    downloads = out_dir / "downloads"
    options = {"progress": progress, "mirror": mirror}
    descriptions_path = dl.download(
        CLASSES_URL, downloads / "class-descriptions-boxable.csv", **options
    )
    labels = resolve_classes(classes, read_class_descriptions(descriptions_path))
    csv_path = filtered_annotations(split, labels, classes, downloads, **options)

    boxes_by_image = collections.defaultdict(list)
    with open(csv_path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            try:
                box = [float(row[k]) for k in ("XMin", "YMin", "XMax", "YMax")]
            except ValueError:
                raise AnnotationError(csv_path, f"non-numeric box in row {row}") from None
            boxes_by_image[row["ImageID"]].append((row["LabelName"], box))
    image_ids = choose_images(boxes_by_image, labels, max_images_per_class, seed)
    _download_images(image_ids, split, out_dir, workers, progress, mirror)

    records = []
    for image_id in image_ids:
        relative = f"{split}/{image_id}.jpg"
        width, height = image_size(out_dir / relative)
        scale = np.array([width, height, width, height], dtype=np.float64)
        absolute = [(np.asarray(b) * scale).tolist() for _, b in boxes_by_image[image_id]]
        source = f"{csv_path} (ImageID {image_id})"
        boxes = check_boxes(absolute, width, height, source, on_invalid)
        if boxes is None:
            continue
        class_ids = [labels.index(label) for label, _ in boxes_by_image[image_id]]
        records.append(Record(relative, width, height, boxes, class_ids))
    log_skipped("open_images", len(image_ids) - len(records), len(image_ids))
    fractions = fractions if fractions is not None else {"train": 0.8, "test": 0.2}
    records = assign_splits(records, fractions, seed)
    record_set = RecordSet("open_images", classes, records, out_dir)
    record_set.save(out_dir)
    return record_set
