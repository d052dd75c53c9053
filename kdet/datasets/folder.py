"""The import step shared by the VOC, COCO, YOLO and TFDS readers.

A reader turns a dataset in its format into a list of :class:`Sample` (source image,
boxes as written, class names, the dataset's own split) and hands it to
:func:`import_samples`, which applies one policy to every format:

- every image is decoded once (Pillow, :func:`~kdet.datasets.checks.image_size`); a
  corrupt or unsupported image is skipped with a count (``on_invalid="skip"``) or
  stops the import naming it (``"raise"``); PNG or WebP bytes under a ``.jpg`` name
  are used with a note; the image's real size wins over a declared one;
- boxes over the image edge are clipped and inverted boxes get their corners swapped
  (both noted); a zero-area or non-finite box skips its image (or stops);
- class names that differ only in case or whitespace (``Raccoon``, `` raccoon ``) are
  merged into the first-seen spelling, with a note; ``classes=`` fixes the class order
  and drops objects of other classes, with a count;
- images are hard-linked (or copied when on another filesystem) under
  ``out_dir/images/`` so the dataset folder is self-contained;
- splits: the dataset's own (two or more names) are kept, otherwise ``fractions``
  with ``seed``;
- ``out_dir/records.json`` and ``out_dir/import_report.json`` are written atomically.

Example:
    >>> samples = [Sample("a.jpg", "photos/a.jpg", [[1, 2, 30, 40]], ["cat"])]
    >>> records = import_samples(samples, "data/raw/mine", name="mine")  # doctest: +SKIP
    >>> records.summary()["classes"]  # doctest: +SKIP
    {'cat': 1}
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import unquote, urlsplit

from PIL import Image

from kdet.datasets import download as dl
from kdet.datasets.checks import check_on_invalid, image_size
from kdet.datasets.records import Record, RecordSet, assign_splits
from kdet.errors import AnnotationError, ImageError, KdetError

logger = logging.getLogger(__name__)

REPORT_FILE = "import_report.json"
IMAGES_DIR = "images"
DOWNLOADS_DIR = "downloads"
DEFAULT_FRACTIONS = {"train": 0.8, "test": 0.2}
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
# Pillow format -> file name extensions that announce it.
_EXTENSIONS_OF = {
    "JPEG": (".jpg", ".jpeg", ".jpe"),
    "MPO": (".jpg", ".jpeg"),
    "PNG": (".png",),
    "GIF": (".gif",),
    "BMP": (".bmp",),
    "WEBP": (".webp",),
}
_TOLERANCE = 1.0  # pixels a box may overshoot the image without a note


@dataclasses.dataclass
class Sample:
    """One image as a reader found it, before checks.

    Attributes:
        image: path of the source image file.
        relative: where it goes under ``out_dir/images/`` (POSIX, unique per sample).
        boxes: ``[[x1, y1, x2, y2], ...]`` as written (pixels, or ``0..1`` when
            ``normalized``); may be inverted or over the edge (repaired on import).
        names: class name per box.
        split: the dataset's own split, or ``None``.
        annotation: the annotation file, named in notes (default: the image).
        size: ``(width, height)`` the annotation declares, or ``None``.
        normalized: boxes are fractions of the image size (YOLO, TFDS).
        difficult: number of objects flagged ``difficult`` (kept; counted).
        error: a content problem the reader found (wrong field count, class id out of
            range, ...), applied per ``on_invalid`` like an unusable box.
    """

    image: str | os.PathLike
    relative: str
    boxes: list[list[float]]
    names: list[str]
    split: str | None = None
    annotation: str | os.PathLike | None = None
    size: tuple[int, int] | None = None
    normalized: bool = False
    difficult: int = 0
    error: str | None = None


class ImportReport:
    """What an import did: counts, and every repair, skip and note with file and reason.

    Entries are ``{"code": ..., "file": ..., "reason": ...}`` in four lists:
    ``skipped`` (an image or object left out), ``repaired`` (changed to be usable),
    ``notes`` (used as it is, worth knowing) and ``warnings`` (kept, but check it).
    ``counts`` holds the number of entries per code plus plain counters (``difficult``
    objects, ``crowd`` objects, ...).

    Example:
        >>> report = ImportReport("voc", "data/voc")
        >>> report.add("repaired", "box_clipped", "a.xml", "box clipped to the image")
        >>> report.counts["box_clipped"]
        1
    """

    KINDS = ("skipped", "repaired", "notes", "warnings")

    def __init__(self, format: str, source: str | os.PathLike):
        self.format = format
        self.source = str(source)
        self.entries: dict[str, list[dict]] = {kind: [] for kind in self.KINDS}
        self.counts: Counter = Counter()
        self.summary: dict = {}

    def add(self, kind: str, code: str, file, reason: str) -> None:
        """Record one entry of ``kind`` (``"skipped"``, ``"repaired"``, ...)."""
        self.entries[kind].append({"code": code, "file": str(file), "reason": reason})
        self.counts[code] += 1
        log = logger.info if kind == "notes" else logger.warning
        log("%s: %s", file, reason)

    def count(self, code: str, n: int = 1) -> None:
        """Add ``n`` to the plain counter ``code``."""
        if n:
            self.counts[code] += n

    def as_dict(self) -> dict:
        """The report as JSON-ready data."""
        return {
            "format": self.format,
            "source": self.source,
            **self.summary,
            "counts": dict(sorted(self.counts.items())),
            **{kind: list(entries) for kind, entries in self.entries.items()},
        }

    def save(self, folder: str | os.PathLike) -> Path:
        """Write ``folder/import_report.json`` atomically."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".report-", suffix=".tmp", dir=folder)
        with os.fdopen(fd, "w") as f:
            json.dump(self.as_dict(), f, indent=1)
        os.replace(tmp, folder / REPORT_FILE)
        return folder / REPORT_FILE


def load_report(folder: str | os.PathLike) -> dict | None:
    """The ``import_report.json`` of a dataset folder, or ``None`` when there is none."""
    path = Path(folder) / REPORT_FILE
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def class_key(name: str) -> str:
    """The form class names are compared in: case-folded, whitespace collapsed.

    Example:
        >>> class_key("  Big   Raccoon ")
        'big raccoon'
    """
    return " ".join(str(name).split()).casefold()


def resolve_source(
    path: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    mirror: str | None = None,
    progress: bool = True,
) -> Path:
    """A local dataset path: ``path`` itself, or an ``https://`` archive fetched and extracted.

    An archive URL is downloaded through :func:`kdet.datasets.download.download` (so
    ``KDET_MIRROR`` applies) to ``out_dir/downloads/`` and safely extracted into
    ``out_dir/downloads/<archive stem>/``; when that holds a single folder, that folder
    is returned.

    Raises:
        FileNotFoundError: a local ``path`` does not exist.
        DownloadError, ArchiveError: the download or the archive failed.

    Example:
        >>> resolve_source("https://example.com/mine.zip", "data/raw/mine")  # doctest: +SKIP
        PosixPath('data/raw/mine/downloads/mine')
    """
    text = os.fspath(path)
    if text.startswith(("http://", "https://")):
        name = Path(unquote(urlsplit(text).path)).name or "dataset.zip"
        downloads = Path(out_dir) / DOWNLOADS_DIR
        archive = dl.download(text, downloads / name, progress=progress, mirror=mirror)
        stem = name
        for suffix in (".zip", ".tgz", ".tar.gz", ".tar.bz2", ".tar.xz", ".tar"):
            if stem.endswith(suffix):
                stem = stem[: -len(suffix)]
                break
        target = downloads / (stem or "dataset")
        if not target.is_dir():
            dl.extract(archive, target)
        entries = [p for p in target.iterdir() if not p.name.startswith(".")]
        if len(entries) == 1 and entries[0].is_dir():
            return entries[0]
        return target
    local = Path(text).expanduser()
    if not local.exists():
        raise FileNotFoundError(f"{local}: dataset path does not exist")
    return local


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files (by extension, any case) under ``folder``, recursively, sorted."""
    folder = Path(folder)
    return sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file() and not _hidden(p, folder)
    )


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


class _Classes:
    """Class names -> ids with merged spellings and the optional ``classes=`` filter."""

    def __init__(self, report: ImportReport, order: Sequence[str] | None, fixed):
        self.report = report
        self.fixed = fixed is not None
        self.names: list[str] = []
        self.ids: dict[str, int] = {}
        self.spelling: dict[str, str] = {}  # every spelling seen -> kept spelling
        if fixed is not None:
            fixed = list(fixed)
            keys = [class_key(n) for n in fixed]
            if not fixed or len(set(keys)) != len(keys) or not all(keys):
                raise ValueError(
                    "classes must be distinct non-empty names (compared without case or "
                    f"extra whitespace). Received: classes={fixed}"
                )
            for name in fixed:
                self._add(str(name).strip(), source=None)
        for name in order or ():
            self.lookup(name, source=f"{report.source} (class list)")

    def _add(self, name: str, source) -> int:
        key = class_key(name)
        self.ids[key] = len(self.names)
        self.names.append(name)
        return self.ids[key]

    def lookup(self, name: str, source) -> int | None:
        """Id of ``name`` (``None``: dropped by the ``classes=`` filter)."""
        key = class_key(name)
        if not key:
            raise AnnotationError(source, "an object has an empty class name")
        if key not in self.ids:
            if self.fixed:
                return None
            self._add(" ".join(str(name).split()), source)
        kept = self.names[self.ids[key]]
        if name != kept and name not in self.spelling:
            self.spelling[name] = kept
            self.report.add(
                "repaired",
                "class_name_merged",
                source,
                f"class name {name!r} merged into {kept!r} (same name up to case/whitespace)",
            )
        return self.ids[key]


def _sorted_first_seen(samples: Sequence[Sample]) -> list[str]:
    """Class names in sorted order of their key, spelled as first seen."""
    first = {}
    for sample in samples:
        for name in sample.names:
            first.setdefault(class_key(name), name)
    return [first[key] for key in sorted(first) if key]


def _content_note(path: Path, image_format: str, report: ImportReport) -> None:
    allowed = _EXTENSIONS_OF.get(image_format, ())
    if path.suffix.lower() not in allowed:
        report.add(
            "notes",
            "extension_mismatch",
            path,
            f"{image_format} data under a {path.suffix or 'bare'} name; used as {image_format}",
        )


def _repair_boxes(
    boxes, width: int, height: int, source, report: ImportReport
) -> list[list[float]]:
    """Clip, un-invert and check absolute boxes; ``AnnotationError`` for an unusable one."""
    repaired = []
    for box in boxes:
        try:
            x1, y1, x2, y2 = (float(v) for v in box)
        except (TypeError, ValueError):
            raise AnnotationError(source, f"box {box!r} is not 4 numbers") from None
        if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
            raise AnnotationError(source, f"box {[x1, y1, x2, y2]} has a non-finite coordinate")
        written = [round(v, 2) for v in (x1, y1, x2, y2)]
        if x2 < x1 or y2 < y1:
            x1, x2 = min(x1, x2), max(x1, x2)
            y1, y2 = min(y1, y2), max(y1, y2)
            report.add(
                "repaired", "box_inverted", source, f"box {written} inverted; corners swapped"
            )
        clipped = [max(x1, 0.0), max(y1, 0.0), min(x2, float(width)), min(y2, float(height))]
        if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
            reason = "has zero area" if (x2 <= x1 or y2 <= y1) else "lies outside the image"
            raise AnnotationError(source, f"box {written} {reason} ({width}x{height} image)")
        if (
            x1 < -_TOLERANCE
            or y1 < -_TOLERANCE
            or x2 > width + _TOLERANCE
            or y2 > height + _TOLERANCE
        ):
            report.add(
                "repaired",
                "box_clipped",
                source,
                f"box {written} over the edge of the {width}x{height} image; clipped to "
                f"{[round(v, 2) for v in clipped]}",
            )
        repaired.append(clipped)
    return repaired


def _place(source: Path, target: Path) -> None:
    """Hard-link ``source`` to ``target`` (copy across filesystems), replacing it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    if tmp.exists():
        tmp.unlink()
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copyfile(source, tmp)
    os.replace(tmp, target)


def _skip(report: ImportReport, error: KdetError, code: str, on_invalid: str) -> None:
    if on_invalid == "raise":
        raise error
    report.add("skipped", code, error.where, f"{error.reason}; image skipped")


def import_samples(
    samples: Sequence[Sample],
    out_dir: str | os.PathLike,
    *,
    name: str,
    report: ImportReport | None = None,
    class_order: Sequence[str] | None = None,
    classes: Sequence[str] | None = None,
    fractions: dict[str, float] | None = None,
    seed: int = 0,
    on_invalid: str = "skip",
    progress: bool = True,
) -> RecordSet:
    """Check, repair and copy ``samples`` into ``out_dir``; save records and report.

    Args:
        samples: what a reader found (see :class:`Sample`).
        out_dir: dataset folder: ``images/``, ``records.json``, ``import_report.json``.
        name: dataset name stored in the records.
        report: the reader's report, to which the import adds its entries.
        class_order: the format's class list (COCO categories by id, YOLO ``names``);
            default: names in sorted order.
        classes: fixes the class order and keeps only these classes (objects of
            others are dropped and counted as ``dropped_by_classes``).
        fractions: split fractions used when the samples carry fewer than two split
            names (default ``{"train": 0.8, "test": 0.2}``).
        seed: seed of that split.
        on_invalid: ``"skip"`` or ``"raise"`` for a corrupt image or an unusable box.
        progress: show a progress bar (only on a terminal).

    Returns:
        The saved :class:`RecordSet` (root ``out_dir``).

    Raises:
        ImageError, AnnotationError: with ``on_invalid="raise"``, naming the file.

    Example:
        >>> import_samples([], "out", name="empty").summary()  # doctest: +SKIP
        {'images': 0, 'boxes': 0, 'classes': {}}
    """
    from tqdm.auto import tqdm

    check_on_invalid(on_invalid)
    out_dir = Path(out_dir)
    report = report if report is not None else ImportReport("folder", out_dir)
    if class_order is None and classes is None:
        class_order = _sorted_first_seen(samples)
    index = _Classes(report, class_order, classes)
    fractions = dict(fractions) if fractions is not None else dict(DEFAULT_FRACTIONS)

    images_dir = out_dir / IMAGES_DIR
    for sample in samples:
        try:
            Path(sample.image).resolve().relative_to(images_dir.resolve())
        except ValueError:
            continue
        raise ValueError(
            f"{sample.image}: the source lies inside the output folder {images_dir}; "
            "import into another out_dir"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".images-", dir=out_dir))
    records: list[Record] = []
    seen: dict[str, str | None] = {}
    try:
        bar = tqdm(samples, desc=f"import {name}", unit="image", disable=not progress or None)
        for sample in bar:
            record = _import_one(sample, staging, index, report, on_invalid, seen)
            if record is not None:
                records.append(record)
        if images_dir.exists():
            trash = Path(tempfile.mkdtemp(prefix=".old-images-", dir=out_dir))
            os.replace(images_dir, trash / IMAGES_DIR)
            os.replace(staging, images_dir)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(staging, images_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)

    own_splits = {r.split for r in records if r.split}
    if len(own_splits) < 2:
        if own_splits:
            report.add(
                "notes",
                "single_split",
                report.source,
                f"the data has one split only ({sorted(own_splits)[0]}); "
                f"split by fractions={fractions} instead",
            )
        for record in records:
            record.split = None
        records = assign_splits(records, fractions, seed, keep_existing=False)
        expected = list(fractions)
    else:
        unassigned = sum(1 for r in records if not r.split)
        if unassigned:
            report.add(
                "notes",
                "no_split",
                report.source,
                f"{unassigned} images are in none of the dataset's splits; "
                f"split by fractions={fractions}",
            )
            records = assign_splits(records, fractions, seed, keep_existing=True)
        expected = sorted({r.split for r in records})
    record_set = RecordSet(name, list(index.names), records, out_dir)
    _summarise(record_set, report, expected)
    record_set.save(out_dir)
    report.save(out_dir)
    record_set.import_report = report.as_dict()
    return record_set


def _import_one(sample, staging, index, report, on_invalid, seen) -> Record | None:
    image = Path(sample.image)
    annotation = sample.annotation if sample.annotation is not None else image
    key = os.path.normcase(str(image.resolve()))
    if key in seen:
        report.add(
            "notes",
            "duplicate_image",
            image,
            f"listed again (split {sample.split}); kept once, in split {seen[key]}",
        )
        return None
    if not image.is_file():
        report.add(
            "skipped", "image_missing", annotation, f"its image {image} does not exist; skipped"
        )
        return None
    try:
        width, height = image_size(image)
        with Image.open(image) as opened:
            image_format = opened.format
    except ImageError as err:
        _skip(report, err, "image_unreadable", on_invalid)
        return None
    _content_note(image, image_format, report)
    if sample.size is not None and tuple(sample.size) != (width, height):
        declared = sample.size
        if not declared[0] or not declared[1]:
            reason = f"declared size {declared[0]}x{declared[1]} is empty"
            code = "size_empty"
        else:
            reason = f"declared size {declared[0]}x{declared[1]}"
            code = "size_mismatch"
        report.add(
            "repaired", code, annotation, f"{reason}; the image is {width}x{height}, used that"
        )
    boxes = sample.boxes
    if sample.normalized:
        boxes = [[b[0] * width, b[1] * height, b[2] * width, b[3] * height] for b in boxes]
    try:
        if sample.error:
            raise AnnotationError(annotation, sample.error)
        if len(boxes) != len(sample.names):
            raise AnnotationError(annotation, f"{len(boxes)} boxes but {len(sample.names)} names")
        ids = [index.lookup(n, annotation) for n in sample.names]
        kept = [(b, i) for b, i in zip(boxes, ids, strict=True) if i is not None]
        dropped = len(boxes) - len(kept)
        boxes = _repair_boxes([b for b, _ in kept], width, height, annotation, report)
    except AnnotationError as err:
        _skip(report, err, "invalid_annotation", on_invalid)
        return None
    report.count("dropped_by_classes", dropped)
    report.count("difficult", sample.difficult)
    if dropped and not boxes:
        report.count("emptied_by_classes")
    seen[key] = sample.split
    relative = sample.relative.lstrip("/")
    _place(image, staging / relative)
    return Record(
        f"{IMAGES_DIR}/{relative}", width, height, boxes, [i for _, i in kept], sample.split
    )


def _summarise(record_set: RecordSet, report: ImportReport, expected) -> None:
    names = record_set.class_names
    images = Counter(r.split for r in record_set.records)
    boxes = Counter()
    per_class = {n: Counter() for n in names}
    for record in record_set.records:
        boxes[record.split] += len(record.classes)
        for class_id in record.classes:
            per_class[names[class_id]][record.split] += 1
    train = {n for n, c in per_class.items() if c.get("train")}
    if "train" in images:
        for split in sorted(s for s in images if s != "train"):
            for n, c in per_class.items():
                if c.get(split) and n not in train:
                    report.add(
                        "warnings",
                        "class_not_in_train",
                        report.source,
                        f"class {n!r} has {c[split]} boxes in {split} but none in train; kept",
                    )
    report.summary = {
        "name": record_set.name,
        "class_names": list(names),
        "splits": list(expected),
        "images": {s: images[s] for s in expected},
        "boxes": {s: boxes[s] for s in expected},
        "classes": {n: {s: c[s] for s in expected} for n, c in per_class.items()},
    }


FORMATS = ("voc", "coco", "yolo")


def detect_format(path: str | os.PathLike) -> str:
    """Guess the format of a dataset folder or file: ``"voc"``, ``"coco"`` or ``"yolo"``.

    Looks for, in this order: a ``*.yaml`` with ``names`` (YOLO), COCO json files
    (``instances_*.json`` here or in ``annotations/``, ``*.json`` here or one per split
    folder, holding ``"images"``), Pascal VOC XML (``Annotations/*.xml``, or ``*.xml``
    anywhere below). A ``.yaml``/``.json`` file given directly is YOLO/COCO.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        AnnotationError: none of those was found; the message lists what was looked for.

    Example:
        >>> detect_format("datasets/coco8")  # doctest: +SKIP
        'yolo'
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: dataset path does not exist")
    if path.is_file():
        if path.suffix.lower() in (".yaml", ".yml"):
            return "yolo"
        if path.suffix.lower() == ".json":
            return "coco"
        raise AnnotationError(path, "a dataset file must be a YOLO data.yaml or a COCO json")
    for yaml_path in sorted(path.glob("*.yaml")) + sorted(path.glob("*.yml")):
        try:
            import yaml

            content = yaml.safe_load(yaml_path.read_text(encoding="utf-8"))
        except Exception:  # noqa: BLE001 (any unreadable yaml is just not a match)
            continue
        if isinstance(content, dict) and "names" in content:
            return "yolo"
    jsons = (
        sorted(path.glob("*.json"))
        + sorted(path.glob("annotations/*.json"))
        + sorted(path.glob("*/*.json"))
    )
    for json_path in jsons[:20]:
        if json_path.name.startswith("instances_"):
            return "coco"
        try:
            with open(json_path, encoding="utf-8") as f:
                head = f.read(1 << 20)
        except (OSError, UnicodeDecodeError):
            continue
        if '"images"' in head and ('"annotations"' in head or '"categories"' in head):
            return "coco"
    if (path / "Annotations").is_dir() or next(path.rglob("*.xml"), None) is not None:
        return "voc"
    raise AnnotationError(
        path,
        "cannot tell the dataset format: looked for a *.yaml with 'names' (YOLO), "
        "instances_*.json or a *.json with 'images' here, in annotations/ or in a split "
        "folder (COCO), and *.xml annotations (Pascal VOC); pass format=",
    )
