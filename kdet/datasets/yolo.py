"""YOLO txt reader (the Ultralytics ``data.yaml`` layout).

``path`` is a ``data.yaml`` or the folder holding it (any ``*.yaml`` with ``names``).
The yaml's keys:

- ``path``: dataset root (optional; relative to the yaml's folder; an absolute root
  that does not exist on this machine falls back to the yaml's folder, with a note);
- ``train`` / ``val`` / ``test``: a folder of images, a ``.txt`` list of image paths
  (relative to the list's folder), or a list of those; the keys are the split names;
- ``names``: a list, or a ``{id: name}`` dict.

Labels sit in the parallel ``labels/`` folder (``images/a/x.jpg`` ->
``labels/a/x.txt``, Ultralytics' rule), one object a line ``class cx cy w h`` in
fractions of the image size. A segmentation line (``class x1 y1 x2 y2 x3 y3 ...``,
Ultralytics allows them in detection sets) becomes its polygon's bounding box, with a
note. A line with another field count, a non-number or a class id out of range skips
its image (``on_invalid="skip"``) or stops (``"raise"``), naming file and line. An
image without a label file is an image without objects (noted); a label file without
its image is skipped and counted.

Example:
    >>> from kdet.datasets import yolo
    >>> yolo.fetch("data/raw/mine", path="datasets/coco8/data.yaml").summary()
    ... # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import yaml

from kdet.datasets import folder as fd
from kdet.datasets.records import RecordSet
from kdet.errors import AnnotationError

SPLIT_KEYS = ("train", "val", "test")


def find_yaml(path: str | os.PathLike) -> Path:
    """The ``data.yaml`` at ``path`` (the file, or the one in the folder).

    Raises:
        AnnotationError: no yaml with ``names`` in the folder.
    """
    path = Path(path)
    if path.is_file():
        return path
    candidates = [path / "data.yaml", path / "data.yml"]
    candidates += sorted(path.glob("*.yaml")) + sorted(path.glob("*.yml"))
    for candidate in candidates:
        if candidate.is_file() and "names" in _safe_yaml(candidate, strict=False):
            return candidate
    raise AnnotationError(path, "no YOLO data.yaml (a *.yaml with 'names') in this folder")


def _safe_yaml(path: Path, strict: bool = True) -> dict:
    try:
        content = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        if not strict:
            return {}
        raise AnnotationError(path, f"not a readable YAML file ({err})") from None
    if not isinstance(content, dict):
        if not strict:
            return {}
        raise AnnotationError(path, "not a YAML mapping")
    return content


def _names(config: dict, yaml_path: Path) -> list[str]:
    names = config.get("names")
    if isinstance(names, list):
        return [str(n) for n in names]
    if isinstance(names, dict):
        try:
            ids = sorted(int(k) for k in names)
        except (TypeError, ValueError):
            raise AnnotationError(yaml_path, f"'names' keys must be class ids: {names}") from None
        if ids != list(range(len(ids))):
            raise AnnotationError(yaml_path, f"'names' ids must be 0..{len(ids) - 1}: {ids}")
        return [str(names.get(i, names.get(str(i)))) for i in ids]
    raise AnnotationError(yaml_path, "'names' must be a list or an {id: name} mapping")


def label_path(image: Path) -> Path:
    """The label file of an image: the last ``images`` folder replaced by ``labels``.

    Example:
        >>> label_path(Path("data/images/train/a.jpg")).as_posix()
        'data/labels/train/a.txt'
    """
    parts = list(image.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def _entries(root: Path, value, yaml_path: Path, report) -> list[Path]:
    images = []
    for entry in value if isinstance(value, list) else [value]:
        target = (root / str(entry)).resolve() if not Path(str(entry)).is_absolute() else None
        target = target or Path(str(entry))
        if target.is_dir():
            images += fd.list_images(target)
            labels = label_path(target / "x.jpg").parent
            if labels != target and labels.is_dir():
                stems = {label_path(i).resolve() for i in fd.list_images(target)}
                for label in sorted(labels.rglob("*.txt")):
                    if label.resolve() not in stems:
                        report.add(
                            "skipped",
                            "annotation_without_image",
                            label,
                            "label file without its image; skipped",
                        )
        elif target.is_file() and target.suffix == ".txt":
            for line in target.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    listed = Path(line.strip())
                    images.append(listed if listed.is_absolute() else target.parent / listed)
        else:
            raise AnnotationError(yaml_path, f"split entry {entry!r}: {target} does not exist")
    return images


def _parse_labels(label: Path, num_classes: int, report) -> tuple[list, list[int], str | None]:
    """``(normalised xyxy boxes, class ids, error or None)`` of one label file."""
    boxes, ids = [], []
    try:
        lines = label.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        return [], [], f"not UTF-8 text ({err})"
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"line {number}"
        if len(fields) != 5 and (len(fields) < 7 or len(fields) % 2 == 0):
            return [], [], f"{where}: {len(fields)} fields, expected 5 (class cx cy w h)"
        try:
            class_id = int(fields[0])
            values = [float(v) for v in fields[1:]]
        except ValueError:
            return [], [], f"{where}: not numbers: {line.strip()!r}"
        if not 0 <= class_id < num_classes:
            return [], [], f"{where}: class id {class_id} out of range 0..{num_classes - 1}"
        if len(values) == 4:
            cx, cy, w, h = values
            boxes.append([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
        else:
            xs, ys = values[0::2], values[1::2]
            boxes.append([min(xs), min(ys), max(xs), max(ys)])
            report.add(
                "repaired",
                "polygon_to_box",
                f"{label}:{number}",
                f"segmentation polygon of {len(xs)} points; its bounding box is used",
            )
        ids.append(class_id)
    return boxes, ids, None


def read(path: str | os.PathLike, report: fd.ImportReport) -> tuple[list[fd.Sample], list[str]]:
    """The samples and class names of a YOLO dataset (``data.yaml`` or its folder).

    Raises:
        AnnotationError: no data.yaml, bad ``names``, or a split entry that is missing.

    Example:
        >>> samples, names = read("coco8/data.yaml", fd.ImportReport("yolo", "x"))
        ... # doctest: +SKIP
    """
    yaml_path = find_yaml(path)
    config = _safe_yaml(yaml_path)
    names = _names(config, yaml_path)
    root = yaml_path.parent
    if config.get("path"):
        declared = Path(str(config["path"])).expanduser()
        candidate = declared if declared.is_absolute() else root / declared
        if candidate.is_dir():
            root = candidate
        else:
            report.add(
                "notes",
                "path_not_found",
                yaml_path,
                f"path: {config['path']} does not exist here; using the yaml's folder",
            )
    splits = [key for key in SPLIT_KEYS if config.get(key)]
    if not splits:
        raise AnnotationError(yaml_path, f"no split listed (looked for keys {SPLIT_KEYS})")
    samples = []
    for split in splits:
        for image in _entries(root, config[split], yaml_path, report):
            label = label_path(image)
            try:
                relative = image.resolve().relative_to(root.resolve()).as_posix()
            except ValueError:
                relative = f"{split}/{image.name}"
            if not label.is_file():
                if image.is_file():
                    report.add(
                        "notes",
                        "image_without_annotation",
                        image,
                        f"no label file {label}; used as an image with no objects",
                    )
                boxes, ids, error = [], [], None
            else:
                boxes, ids, error = _parse_labels(label, len(names), report)
            samples.append(
                fd.Sample(
                    image,
                    relative,
                    boxes,
                    [names[i] for i in ids],
                    split,
                    annotation=label if label.is_file() else image,
                    normalized=True,
                    error=error,
                )
            )
    return samples, names


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
    """Import a YOLO txt dataset into ``out_dir`` (``images/``, ``records.json``).

    Args:
        out_dir: dataset folder to write.
        path: the ``data.yaml``, its folder, or an ``https://`` URL of a zip/tar
            archive (through ``KDET_MIRROR``).
        fractions: split used when the yaml lists fewer than two splits (default
            ``{"train": 0.8, "test": 0.2}``).
        seed: seed of that split.
        classes: class order and filter (default: ``names``, by id).
        on_invalid: ``"skip"`` or ``"raise"`` for a corrupt image, a bad label line
            or an unusable box.
        name: dataset name (default: the yaml folder's name).
        mirror: mirror folder or base URL (default: ``KDET_MIRROR``).
        progress: show progress bars.

    Returns:
        The saved :class:`RecordSet`; ``import_report.json`` is written next to it.

    Example:
        >>> fetch("data/raw/coco8", path="datasets/coco8").summary()  # doctest: +SKIP
    """
    source = fd.resolve_source(path, out_dir, mirror=mirror, progress=progress)
    report = fd.ImportReport("yolo", path)
    samples, names = read(source, report)
    return fd.import_samples(
        samples,
        out_dir,
        name=name or find_yaml(source).parent.name,
        report=report,
        class_order=names,
        classes=classes,
        fractions=fractions,
        seed=seed,
        on_invalid=on_invalid,
        progress=progress,
    )
