"""One record format for every dataset source.

A :class:`RecordSet` is a list of :class:`Record` (one per image: path, size, boxes in
absolute-pixel ``xyxy``, class ids, split) plus the class names. It is saved as
``records.json`` next to the images so a dataset folder can move (paths are relative).

Example:
    >>> rs = RecordSet("toy", ["cat"], [Record("a.jpg", 64, 48, [[1, 2, 30, 40]], [0])])
    >>> rs.summary()
    {'images': 1, 'boxes': 1, 'classes': {'cat': 1}}
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np

from kdet.errors import AnnotationError

RECORDS_FILE = "records.json"


@dataclasses.dataclass
class Record:
    """One image and its objects.

    Attributes:
        image: image path, relative to the record set's root (POSIX separators).
        width: image width in pixels.
        height: image height in pixels.
        boxes: ``[[x1, y1, x2, y2], ...]`` absolute pixels (may be empty).
        classes: class id per box.
        split: ``"train"``, ``"test"``, ... or ``None`` when not yet assigned.
    """

    image: str
    width: int
    height: int
    boxes: list[list[float]]
    classes: list[int]
    split: str | None = None

    def boxes_array(self) -> np.ndarray:
        """Boxes as a float32 ``(N, 4)`` array (``(0, 4)`` when there are none)."""
        return np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)

    def classes_array(self) -> np.ndarray:
        """Class ids as an int32 ``(N,)`` array."""
        return np.asarray(self.classes, dtype=np.int32).reshape(-1)


@dataclasses.dataclass
class RecordSet:
    """The records of one dataset and its class names.

    Attributes:
        name: dataset name, e.g. ``"raccoon"``.
        class_names: names indexed by class id.
        records: one :class:`Record` per image.
        root: folder the records' image paths are relative to.
    """

    name: str
    class_names: list[str]
    records: list[Record]
    root: Path = dataclasses.field(default_factory=Path)

    def __len__(self) -> int:
        return len(self.records)

    def image_path(self, record: Record) -> Path:
        """Absolute path of a record's image."""
        return Path(self.root) / record.image

    def summary(self) -> dict:
        """``{"images": N, "boxes": M, "classes": {name: boxes}}``."""
        per_class = {name: 0 for name in self.class_names}
        for record in self.records:
            for class_id in record.classes:
                per_class[self.class_names[class_id]] += 1
        return {
            "images": len(self.records),
            "boxes": sum(per_class.values()),
            "classes": per_class,
        }

    def fingerprint(self) -> str:
        """SHA-256 of the class names and the records' paths, sizes, boxes, classes, splits
        (a cache key: equal for equal data)."""
        payload = {
            "class_names": list(self.class_names),
            "records": [
                [r.image, r.width, r.height, r.boxes, r.classes, r.split] for r in self.records
            ],
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    def split(self, name: str) -> RecordSet:
        """The records whose ``split`` is ``name`` (same root and class names)."""
        chosen = [r for r in self.records if r.split == name]
        return dataclasses.replace(self, records=chosen)

    def save(self, folder: str | os.PathLike | None = None) -> Path:
        """Write ``records.json`` atomically into ``folder`` (default: ``root``)."""
        folder = Path(folder if folder is not None else self.root)
        folder.mkdir(parents=True, exist_ok=True)
        payload = {
            "name": self.name,
            "class_names": list(self.class_names),
            "summary": self.summary(),
            "records": [dataclasses.asdict(r) for r in self.records],
        }
        target = folder / RECORDS_FILE
        fd, tmp = tempfile.mkstemp(prefix=".records-", suffix=".tmp", dir=folder)
        with os.fdopen(fd, "w") as f:
            json.dump(payload, f)
        os.replace(tmp, target)
        return target

    @classmethod
    def load(cls, folder: str | os.PathLike) -> RecordSet:
        """Read ``folder/records.json``; image paths resolve against ``folder``."""
        folder = Path(folder)
        path = folder / RECORDS_FILE
        try:
            payload = json.loads(path.read_text())
            records = [Record(**r) for r in payload["records"]]
            return cls(payload["name"], payload["class_names"], records, folder)
        except FileNotFoundError:
            raise AnnotationError(path, "no records file; fetch the dataset first") from None
        except (ValueError, KeyError, TypeError) as err:
            raise AnnotationError(path, f"malformed records file ({err})") from None


def validate_boxes(
    boxes, width: int, height: int, source: str | os.PathLike, tolerance: float = 1.0
) -> list[list[float]]:
    """Check absolute ``xyxy`` boxes against their image and clip them to it.

    A box may overshoot the image by up to ``tolerance`` pixels (annotation tools often
    write ``xmax == width``); it is clipped. Non-finite, inverted or empty boxes and
    boxes far outside the image raise :class:`AnnotationError` naming ``source``.

    Example:
        >>> validate_boxes([[0, 0, 65, 10]], 64, 48, "a.xml")
        [[0.0, 0.0, 64.0, 10.0]]
    """
    checked = []
    for box in np.asarray(boxes, dtype=np.float64).reshape(-1, 4):
        x1, y1, x2, y2 = (float(v) for v in box)
        if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
            raise AnnotationError(source, f"box {box.tolist()} has a non-finite coordinate")
        if x2 <= x1 or y2 <= y1:
            raise AnnotationError(source, f"box {box.tolist()} is empty or inverted")
        if x1 < -tolerance or y1 < -tolerance or x2 > width + tolerance or y2 > height + tolerance:
            raise AnnotationError(
                source, f"box {box.tolist()} lies outside the {width}x{height} image"
            )
        checked.append([max(x1, 0.0), max(y1, 0.0), min(x2, float(width)), min(y2, float(height))])
    return checked


def assign_splits(
    records: list[Record], fractions: dict[str, float], seed: int, keep_existing: bool = True
) -> list[Record]:
    """Assign a split to every record, deterministically for a given ``seed``.

    Records are shuffled by ``seed`` and cut by ``fractions`` (in the dict's order; the
    last split takes the remainder). With ``keep_existing``, records that already have a
    split (an author's split) keep it.

    Example:
        >>> rs = [Record(f"{i}.jpg", 8, 8, [], []) for i in range(10)]
        >>> [r.split for r in assign_splits(rs, {"train": 0.8, "test": 0.2}, seed=0)].count("test")
        2
    """
    if not fractions or any(f < 0 for f in fractions.values()):
        raise ValueError(f"fractions must be non-negative. Received: fractions={fractions}")
    total = sum(fractions.values())
    todo = [i for i, r in enumerate(records) if not (keep_existing and r.split)]
    order = np.random.default_rng(seed).permutation(len(todo))
    out = [dataclasses.replace(r) for r in records]
    names = list(fractions)
    start = 0
    for k, name in enumerate(names):
        stop = (
            len(todo) if k == len(names) - 1 else start + round(len(todo) * fractions[name] / total)
        )
        for j in order[start:stop]:
            out[todo[j]].split = name
        start = stop
    return out
