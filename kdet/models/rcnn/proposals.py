"""Region proposals with OpenCV's selective search, computed once and reused.

Selective search (``cv2.ximgproc.segmentation``, OpenCV contrib, in
:mod:`kdet.models.rcnn.selective_search`) runs on the CPU outside any TensorFlow graph. It
is slow at full size (seconds per image), so it can search a copy of the image shrunk to
``max_side`` pixels on its longest side and scale the boxes back, and
:func:`propose_records` spreads images over processes. Proposals are saved
as one ``.npz`` (one array per image) that training, evaluation and benchmarks share.

Example:
    >>> import numpy as np
    >>> image = np.zeros((60, 80, 3), np.uint8)
    >>> image[10:40, 20:50] = 255
    >>> boxes = selective_search(image, mode="fast", max_side=40)
    >>> boxes.shape[1], bool((boxes[:, 2] <= 80).all())
    (4, True)
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import time
from pathlib import Path

import cv2
import numpy as np

from kdet.bounding_box import compute_iou
from kdet.datasets.records import RecordSet
from kdet.errors import ImageError
from kdet.models.rcnn.selective_search import selective_search


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as ``uint8 (H, W, 3)`` RGB; raises :class:`ImageError`."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ImageError(path, "cannot be read as an image (missing, empty or corrupt)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _search_file(path: str, options: dict) -> tuple[np.ndarray, float]:
    cv2.setNumThreads(1)  # one process per core; OpenCV's own threads would oversubscribe
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise ImageError(path, "cannot be read as an image (missing, empty or corrupt)")
    start = time.perf_counter()
    boxes = selective_search(image, **options)
    return boxes, time.perf_counter() - start


def propose_records(
    record_set: RecordSet,
    *,
    mode: str = "fast",
    max_side: int | None = None,
    max_proposals: int | None = None,
    seed: int = 0,
    processes: int | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Selective search over every image of ``record_set``, images in parallel processes.

    Args:
        record_set: the images (their ``image`` paths key the result).
        mode, max_side, max_proposals, seed: see :func:`selective_search`.
        processes: worker processes (default: ``os.cpu_count()``); 1 runs in-process.

    Returns:
        ``(proposals, timing)``: ``{record.image: (N, 4) xyxy}`` and
        ``{"seconds_per_image": mean search time of one image in one process,
        "wall_seconds": total wall time, "images": count, "seconds": {record.image:
        search time}}`` (times exclude reading the image).
    """
    paths = [str(record_set.image_path(r)) for r in record_set.records]
    options = {"mode": mode, "max_side": max_side, "max_proposals": max_proposals, "seed": seed}
    work = functools.partial(_search_file, options=options)
    processes = processes or os.cpu_count() or 1
    start = time.perf_counter()
    if processes == 1 or len(paths) <= 1:
        results = [work(p) for p in paths]
    else:
        with multiprocessing.get_context("spawn").Pool(processes) as pool:
            results = pool.map(work, paths, chunksize=1)
    wall = time.perf_counter() - start
    proposals = {r.image: boxes for r, (boxes, _) in zip(record_set.records, results, strict=True)}
    seconds = [s for _, s in results]
    timing = {
        "seconds_per_image": float(np.mean(seconds)) if seconds else 0.0,
        "wall_seconds": wall,
        "images": len(paths),
        "seconds": {r.image: s for r, s in zip(record_set.records, seconds, strict=True)},
    }
    return proposals, timing


def proposal_recall(
    proposals: dict[str, np.ndarray],
    record_set: RecordSet,
    iou_thresholds=(0.5, 0.7),
) -> dict[str, float]:
    """Share of ground-truth boxes that some proposal overlaps by at least each IoU.

    Returns:
        ``{"recall_50": ..., "recall_70": ..., "proposals_per_image": ...}`` (keys from
        the thresholds as percentages).

    Example:
        >>> from kdet.datasets.records import Record
        >>> rs = RecordSet("toy", ["a"], [Record("x.jpg", 10, 10, [[0, 0, 4, 4]], [0])])
        >>> proposal_recall({"x.jpg": np.array([[0, 0, 4, 5.0]])}, rs)["recall_70"]
        1.0
    """
    best = []
    counts = []
    for record in record_set.records:
        boxes = proposals[record.image]
        counts.append(len(boxes))
        gt = record.boxes_array()
        if len(gt) == 0:
            continue
        if len(boxes) == 0:
            best.extend([0.0] * len(gt))
            continue
        iou = compute_iou(gt, boxes.astype(np.float32), bounding_box_format="xyxy")
        best.extend(iou.max(axis=1).tolist())
    best = np.asarray(best)
    recall = {
        f"recall_{round(t * 100)}": float((best >= t).mean()) if best.size else 0.0
        for t in iou_thresholds
    }
    recall["proposals_per_image"] = float(np.mean(counts)) if counts else 0.0
    return recall


def save_proposals(path: str | os.PathLike, proposals: dict[str, np.ndarray]) -> Path:
    """Write ``{image: (N, 4) xyxy}`` to one ``.npz`` file (keys are the image paths)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        np.savez_compressed(f, **{k: np.asarray(v, np.float32) for k, v in proposals.items()})
    return path


def load_proposals(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read proposals written by :func:`save_proposals` as ``{image: (N, 4) xyxy}``."""
    with np.load(path) as data:
        return {k: data[k] for k in data.files}
