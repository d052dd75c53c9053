"""What is in a dataset, and what is wrong with it: the back end of ``kdet data check``.

:func:`dataset_report` counts images and boxes per split and class, buckets box sizes
like COCO (``sqrt(area)`` < 32 small, 32-96 medium, > 96 large pixels), carries the
import report's repairs and skips, and lists the fatal problems that make a dataset
unusable for training (no images, no boxes at all, no training or held-out split,
images without a split, an asked split left empty). :func:`format_report` prints it;
:func:`check_dataset` imports a dataset (or fetches a built-in) and reports on it.

Example:
    >>> report, code = check_dataset("datasets/mine")  # doctest: +SKIP
    >>> print(format_report(report))  # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
import tempfile
from collections import Counter
from pathlib import Path

from kdet.datasets.records import RecordSet
from kdet.errors import KdetError

# Edges of the text histogram of sqrt(box area), in pixels.
HISTOGRAM_EDGES = (0, 8, 16, 32, 64, 96, 128, 256, 512)
SIZE_BUCKETS = (("small", 0, 32), ("medium", 32, 96), ("large", 96, math.inf))
HELD_OUT = ("val", "valid", "validation", "test")
EXIT_OK, EXIT_FATAL, EXIT_ERROR = 0, 1, 2


def dataset_report(record_set: RecordSet, import_report: dict | None = None) -> dict:
    """Counts, box sizes, repairs and fatal problems of a record set.

    Args:
        record_set: the records (e.g. ``RecordSet.load("data/raw/mine")``).
        import_report: the reader's report (``import_report.json``), whose repairs,
            skips, notes, warnings, counts and expected splits are carried over.

    Returns:
        A JSON-ready dict: ``name``, ``class_names``, ``images``/``boxes`` per split
        (and ``"total"``), ``classes`` (``{name: {split: boxes}}``),
        ``images_without_boxes``, ``box_sizes`` (small/medium/large),
        ``box_size_histogram`` (``[[low, high, count], ...]``), ``skipped``,
        ``repaired``, ``notes``, ``warnings``, ``counts`` and ``fatal``.

    Example:
        >>> from kdet.datasets.records import Record
        >>> record = Record("a.jpg", 64, 64, [[0, 0, 40, 40]], [0], "train")
        >>> rs = RecordSet("toy", ["cat"], [record])
        >>> dataset_report(rs)["box_sizes"]
        {'small': 0, 'medium': 1, 'large': 0}
    """
    import_report = import_report or {}
    names = record_set.class_names
    splits = sorted({r.split for r in record_set.records if r.split})
    images, boxes, empty = Counter(), Counter(), Counter()
    per_class = {n: Counter() for n in names}
    sizes = Counter()
    histogram = [0] * len(HISTOGRAM_EDGES)
    for record in record_set.records:
        split = record.split or "unassigned"
        images[split] += 1
        boxes[split] += len(record.classes)
        if not record.classes:
            empty[split] += 1
        for class_id in record.classes:
            per_class[names[class_id]][split] += 1
        for x1, y1, x2, y2 in record.boxes_array().tolist():
            side = math.sqrt(max(x2 - x1, 0.0) * max(y2 - y1, 0.0))
            for bucket, low, high in SIZE_BUCKETS:
                if low <= side < high:
                    sizes[bucket] += 1
            index = sum(1 for edge in HISTOGRAM_EDGES[1:] if side >= edge)
            histogram[index] += 1
    keys = splits + (["unassigned"] if images.get("unassigned") else [])
    edges = list(HISTOGRAM_EDGES[1:]) + [None]
    warnings = list(import_report.get("warnings", []))
    known = {w.get("reason") for w in warnings}
    train = {n for n, c in per_class.items() if c.get("train")}
    for split in (s for s in splits if s != "train" and "train" in splits):
        for n, c in per_class.items():
            reason = f"class {n!r} has {c[split]} boxes in {split} but none in train; kept"
            if c.get(split) and n not in train and reason not in known:
                warnings.append({"code": "class_not_in_train", "file": "", "reason": reason})
    for n, c in per_class.items():
        if not sum(c.values()):
            warnings.append(
                {"code": "class_without_boxes", "file": "", "reason": f"class {n!r} has no boxes"}
            )
    fatal = []
    if not record_set.records:
        fatal.append("no images")
    elif not sum(boxes.values()):
        fatal.append("no boxes at all")
    if record_set.records:
        if "train" not in splits:
            fatal.append(f"no train split (splits: {splits})")
        if not [s for s in splits if s != "train"]:
            fatal.append(f"no held-out split to evaluate on (splits: {splits})")
        if images.get("unassigned"):
            fatal.append(f"{images['unassigned']} images have no split")
    for split in import_report.get("splits", []):
        if not images.get(split) and record_set.records:
            fatal.append(f"split {split!r} has no images")
    return {
        "name": record_set.name,
        "format": import_report.get("format"),
        "source": import_report.get("source"),
        "class_names": list(names),
        "images": {**{s: images[s] for s in keys}, "total": sum(images.values())},
        "boxes": {**{s: boxes[s] for s in keys}, "total": sum(boxes.values())},
        "images_without_boxes": {s: empty[s] for s in keys},
        "classes": {n: {s: c[s] for s in keys} for n, c in per_class.items()},
        "box_sizes": {bucket: sizes[bucket] for bucket, _, _ in SIZE_BUCKETS},
        "box_size_histogram": [
            [low, high, count]
            for low, high, count in zip(HISTOGRAM_EDGES, edges, histogram, strict=False)
        ],
        "counts": dict(import_report.get("counts", {})),
        "skipped": list(import_report.get("skipped", [])),
        "repaired": list(import_report.get("repaired", [])),
        "notes": list(import_report.get("notes", [])),
        "warnings": warnings,
        "fatal": fatal,
    }


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=False))
        )
        for row in rows
    ]


def format_report(report: dict, *, max_entries: int = 10, width: int = 40) -> str:
    """The report of :func:`dataset_report` as text: tables, a histogram, the problems.

    Args:
        report: from :func:`dataset_report` (or :func:`check_dataset`).
        max_entries: repairs/skips/notes listed per kind (the rest are counted).
        width: characters of the longest histogram bar.

    Example:
        >>> print(format_report(report))  # doctest: +SKIP
        dataset mine (yolo): 32 images, 45 boxes, 2 classes
        ...
    """
    lines = []
    images, boxes = report.get("images", {}), report.get("boxes", {})
    fmt = f" ({report['format']})" if report.get("format") else ""
    lines.append(
        f"dataset {report.get('name')}{fmt}: {images.get('total', 0)} images, "
        f"{boxes.get('total', 0)} boxes, {len(report.get('class_names', []))} classes"
    )
    splits = [s for s in images if s != "total"]
    if splits:
        rows = [["", *splits, "total"]]
        rows.append(["images", *(str(images[s]) for s in splits), str(images["total"])])
        rows.append(["boxes", *(str(boxes[s]) for s in splits), str(boxes["total"])])
        empty = report.get("images_without_boxes", {})
        rows.append(["no boxes", *(str(empty.get(s, 0)) for s in splits), str(sum(empty.values()))])
        for name, counts in report.get("classes", {}).items():
            rows.append(
                [f"  {name}", *(str(counts.get(s, 0)) for s in splits), str(sum(counts.values()))]
            )
        lines += ["", *_table(rows)]
    sizes = report.get("box_sizes", {})
    if sizes:
        lines += [
            "",
            "box sizes (sqrt area, px): " + ", ".join(f"{k} {v}" for k, v in sizes.items()),
        ]
        histogram = report.get("box_size_histogram", [])
        top = max((count for _, _, count in histogram), default=0) or 1
        for low, high, count in histogram:
            label = f"{low:>4}-{high:<4}" if high is not None else f"{low:>4}+    "
            lines.append(f"  {label} {'#' * math.ceil(width * count / top):<{width}} {count}")
    counts = report.get("counts", {})
    if counts:
        lines += ["", "counts: " + ", ".join(f"{k} {v}" for k, v in counts.items())]
    for kind in ("skipped", "repaired", "notes", "warnings"):
        entries = report.get(kind, [])
        if not entries:
            continue
        lines += ["", f"{kind} ({len(entries)}):"]
        for entry in entries[:max_entries]:
            where = f"{entry['file']}: " if entry.get("file") else ""
            lines.append(f"  {where}{entry['reason']}")
        if len(entries) > max_entries:
            lines.append(f"  ... and {len(entries) - max_entries} more")
    fatal = report.get("fatal", [])
    lines += ["", "FATAL: " + "; ".join(fatal) if fatal else "OK: usable for training"]
    return "\n".join(lines)


def check_dataset(
    path_or_name: str | os.PathLike,
    *,
    format: str | None = None,
    out_dir: str | os.PathLike | None = None,
    **options,
) -> tuple[dict, int]:
    """Import (or fetch) a dataset and report on it: the back end of ``kdet data check``.

    Args:
        path_or_name: a built-in dataset name (``raccoon``, ...), a folder or file in
            one of the formats, an ``https://`` archive, or a TFDS name (with
            ``format="tfds"``).
        format: ``"voc"``, ``"coco"``, ``"yolo"`` or ``"tfds"``; guessed from the
            folder content (:func:`~kdet.datasets.folder.detect_format`) when ``None``.
        out_dir: where to import; a temporary folder (deleted afterwards) when ``None``.
        **options: options of the reader (``classes=``, ``fractions=``, ...).

    Returns:
        ``(report, exit_code)``: the :func:`dataset_report` dict (with ``"error"`` when
        the import stopped) and ``0`` (usable), ``1`` (fatal problems) or ``2`` (the
        import failed; the error names the file).

    Example:
        >>> report, code = check_dataset("datasets/coco8", format="yolo")  # doctest: +SKIP
        >>> code  # doctest: +SKIP
        0
    """
    from kdet.datasets import BUILT_IN, FORMATS, SOURCES
    from kdet.datasets.folder import detect_format, load_report, resolve_source

    if format is not None and format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}. Received: format={format!r}")
    temporary = None
    if out_dir is None:
        temporary = tempfile.TemporaryDirectory(prefix="kdet-check-")
        out_dir = temporary.name
    try:
        text = os.fspath(path_or_name)
        try:
            if format is None and text in BUILT_IN:
                record_set = SOURCES[text](out_dir, **options)
            else:
                if format is None:
                    local = resolve_source(
                        text,
                        out_dir,
                        mirror=options.get("mirror"),
                        progress=options.get("progress", True),
                    )
                    format = detect_format(local)
                    text = os.fspath(local)
                if format == "tfds":
                    options.pop("mirror", None)
                record_set = SOURCES[format](out_dir, path=text, **options)
        except (KdetError, FileNotFoundError, ValueError) as err:
            report = {"name": Path(text).name, "format": format, "source": text}
            report.update(error=str(err), fatal=[str(err)])
            return report, EXIT_ERROR
        report = dataset_report(record_set, load_report(out_dir) if format else None)
        return report, EXIT_FATAL if report["fatal"] else EXIT_OK
    finally:
        if temporary is not None:
            temporary.cleanup()
