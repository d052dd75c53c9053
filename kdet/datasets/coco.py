"""COCO JSON reader (``instances_*.json``), parsed with ``pycocotools.coco.COCO``.

``path`` is a COCO json file, or a folder holding them (in it, in ``annotations/``, or
one per split folder such as Roboflow's ``train/_annotations.coco.json``). Several
files give the splits: ``instances_<split>.json`` -> ``<split>`` with a trailing year
dropped (``instances_val2017.json`` -> ``val``), or the split folder's name. A single
file has no splits of its own: the images are split by ``fractions``.

An image's ``file_name`` is looked up relative to the json's folder, then in
``images/``, then in a folder named after the split (``train2017/``), beside the json
or one level up. Categories keep their names, ordered by category id. COCO boxes
``[x, y, w, h]`` (floats) become ``xyxy``; a negative width or height is repaired like
an inverted box. ``iscrowd`` objects (regions of many objects) are dropped and counted
(``crowd`` in the report); an image listed without annotations is an image without
objects. An annotation whose ``image_id`` is not listed, or whose image file is
missing, is skipped and counted.

Example:
    >>> from kdet.datasets import coco
    >>> coco.fetch("data/raw/mine", path="~/coco/annotations").summary()  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path

from kdet.datasets import folder as fd
from kdet.datasets.records import RecordSet
from kdet.errors import AnnotationError


def _json_files(path: Path) -> list[tuple[Path, str | None, str | None]]:
    """``(json, split, raw split folder name)`` triples found at ``path``."""
    if path.is_file():
        raw = path.stem.removeprefix("instances_") if path.stem.startswith("instances_") else None
        return [(path, None, raw)]
    found = sorted(path.glob("instances_*.json")) or sorted(
        (path / "annotations").glob("instances_*.json")
    )
    if found:
        raw = [f.stem.removeprefix("instances_") for f in found]
        if len(found) == 1:
            return [(found[0], None, raw[0])]
        return [(f, re.sub(r"\d{4}$", "", r) or r, r) for f, r in zip(found, raw, strict=False)]
    per_split = [
        (sorted(d.glob("*.json")), d.name)
        for d in sorted(path.iterdir())
        if d.is_dir() and any(d.glob("*.json"))
    ]
    if len(per_split) >= 2 and all(len(files) == 1 for files, _ in per_split):
        return [(files[0], name, name) for files, name in per_split]
    loose = sorted(path.glob("*.json")) or sorted((path / "annotations").glob("*.json"))
    if len(loose) == 1:
        return [(loose[0], None, None)]
    if loose:
        return [(f, f.stem, f.stem) for f in loose]
    raise AnnotationError(
        path,
        "no COCO json found (looked for instances_*.json here and in annotations/, "
        "one *.json per split folder, or *.json)",
    )


def _load(json_path: Path):
    from pycocotools.coco import COCO

    try:
        data = json.loads(json_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise AnnotationError(json_path, f"not a JSON file ({err})") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise AnnotationError(json_path, "not a COCO detection file (no 'images' list)")
    data.setdefault("annotations", [])
    data.setdefault("categories", [])
    for key in ("annotations", "categories"):
        if not isinstance(data[key], list):
            raise AnnotationError(json_path, f"'{key}' is not a list")
    try:
        for image in data["images"]:
            image["id"], image["file_name"]  # noqa: B018 (checked for presence)
        for category in data["categories"]:
            category["id"], category["name"]  # noqa: B018
        for annotation in data["annotations"]:
            annotation["image_id"], annotation["id"]  # noqa: B018
    except (KeyError, TypeError) as err:
        raise AnnotationError(json_path, f"an entry lacks the key {err}") from None
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco.createIndex()
    return coco


def _find_image(json_dir: Path, file_name: str, raw_split: str | None) -> Path | None:
    bases = [json_dir, json_dir / "images", json_dir.parent, json_dir.parent / "images"]
    if raw_split:
        bases += [
            json_dir / raw_split,
            json_dir.parent / raw_split,
            json_dir.parent / "images" / raw_split,
        ]
    for base in bases:
        candidate = base / file_name
        if candidate.is_file():
            return candidate
    return None


def read(path: str | os.PathLike, report: fd.ImportReport) -> tuple[list[fd.Sample], list[str]]:
    """The samples and category names (by id) of COCO json file(s) at ``path``.

    Raises:
        AnnotationError: no json found, a json that is not COCO, or files whose
            categories disagree.

    Example:
        >>> samples, names = read("coco/annotations", fd.ImportReport("coco", "x"))
        ... # doctest: +SKIP
    """
    path = Path(path)
    files = _json_files(path)
    samples, categories = [], None
    root = path if path.is_dir() else path.parent
    for json_path, split, raw_split in files:
        coco = _load(json_path)
        cats = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
        if categories is None:
            categories = cats
        elif cats != categories:
            raise AnnotationError(json_path, f"categories differ from those of {files[0][0]}")
        image_ids = set(coco.getImgIds())
        orphans = {a["image_id"] for a in coco.dataset["annotations"]} - image_ids
        for image_id in sorted(orphans, key=str):
            report.add(
                "skipped",
                "annotation_without_image",
                json_path,
                f"annotations refer to image_id {image_id}, which is not in 'images'; skipped",
            )
        for info in coco.loadImgs(sorted(image_ids, key=str)):
            file_name = str(info["file_name"])
            image = _find_image(json_path.parent, file_name, raw_split)
            where = f"{json_path} (image id {info['id']}, {file_name})"
            if image is None:
                report.add(
                    "skipped",
                    "annotation_without_image",
                    where,
                    "its image file is not found next to the json, in images/ or in a "
                    "split folder; skipped",
                )
                continue
            boxes, names, crowd, error = [], [], 0, None
            for annotation in coco.loadAnns(coco.getAnnIds(imgIds=[info["id"]])):
                if annotation.get("iscrowd"):
                    crowd += 1
                    continue
                bbox = annotation.get("bbox")
                category = cats.get(annotation.get("category_id"))
                if category is None:
                    error = f"annotation {annotation['id']}: unknown category_id "
                    error += repr(annotation.get("category_id"))
                elif not isinstance(bbox, list) or len(bbox) != 4 or not _numbers(bbox):
                    error = f"annotation {annotation['id']}: bbox {bbox!r} is not 4 numbers"
                else:
                    x, y, w, h = bbox
                    boxes.append([x, y, x + w, y + h])
                    names.append(category)
            report.count("crowd", crowd)
            size = None
            if info.get("width") and info.get("height"):
                size = (int(info["width"]), int(info["height"]))
            try:
                relative = image.resolve().relative_to(root.resolve()).as_posix()
            except ValueError:
                relative = f"{raw_split or 'images'}/{file_name}"
            samples.append(
                fd.Sample(
                    image, relative, boxes, names, split, annotation=where, size=size, error=error
                )
            )
    categories = categories or {}
    return samples, [categories[k] for k in sorted(categories)]


def _numbers(values) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def fetch(
    out_dir: str | os.PathLike,
    *,
    path: str | os.PathLike,
    fractions: dict[str, float] | None = None,
    seed: int = 0,
    classes: Sequence[str] | None = None,
    on_invalid: str = "skip",
    name: str | None = None,
    mirror: str | None = None,
    progress: bool = True,
) -> RecordSet:
    """Import a COCO json dataset into ``out_dir`` (``images/``, ``records.json``).

    Args:
        out_dir: dataset folder to write.
        path: a COCO json, a folder of them (see the module docstring), or an
            ``https://`` URL of a zip/tar archive (through ``KDET_MIRROR``).
        fractions: split used when the data has no splits of its own (default
            ``{"train": 0.8, "test": 0.2}``).
        seed: seed of that split.
        classes: class order and filter (default: the categories, by id).
        on_invalid: ``"skip"`` or ``"raise"`` for a corrupt image or an unusable box
            (zero area, unknown ``category_id``, malformed ``bbox``).
        name: dataset name (default: the folder's name).
        mirror: mirror folder or base URL (default: ``KDET_MIRROR``).
        progress: show progress bars.

    Returns:
        The saved :class:`RecordSet`; ``import_report.json`` is written next to it.

    Example:
        >>> fetch("data/raw/coco_cats", path="coco/annotations", classes=["cat"])
        ... # doctest: +SKIP
    """
    source = fd.resolve_source(path, out_dir, mirror=mirror, progress=progress)
    report = fd.ImportReport("coco", path)
    samples, categories = read(source, report)
    return fd.import_samples(
        samples,
        out_dir,
        name=name or (source.stem if source.is_file() else source.name),
        report=report,
        class_order=categories,
        classes=classes,
        fractions=fractions,
        seed=seed,
        on_invalid=on_invalid,
        progress=progress,
    )
