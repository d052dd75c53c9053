"""A detector at its operating threshold: per-class precision/recall and a confusion matrix.

AP summarises every score threshold; a deployed detector runs at one (its serving
``score_threshold``). This module counts, at that threshold, each class's true positives,
false positives and misses, and the usual detection confusion matrix (as Ultralytics draws
it): rows are the true class plus ``"background"`` (a detection that overlaps no
unmatched ground-truth box), columns the predicted class plus ``"missed"`` (a
ground-truth box no detection matched).

Matching, per image: detections at or above ``score_threshold`` are taken best score
first; each takes the unmatched ground-truth box of its own class with the highest IoU
(>= ``iou_threshold``) and is a true positive; failing that, the unmatched box of any
other class with the highest IoU, which is a class confusion (a false positive of the
predicted class and a miss of the true one); failing that, it is background. A second
detection of an already matched box (a duplicate) is background.

Example:
    >>> gt = [{"boxes": [[0, 0, 10, 10], [20, 20, 30, 30]], "classes": [0, 1]}]
    >>> dt = [{"boxes": [[0, 0, 10, 10], [20, 20, 30, 30]], "scores": [0.9, 0.8],
    ...        "classes": [0, 0]}]
    >>> point = operating_point(gt, dt, ["cat", "dog"], score_threshold=0.5)
    >>> point["matrix"].tolist()  # rows cat, dog, background; columns cat, dog, missed
    [[1, 0, 0], [1, 0, 0], [0, 0, 0]]
    >>> point["per_class"]["cat"]["precision"], point["per_class"]["dog"]["recall"]
    (0.5, 0.0)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from kdet.metrics._boxes import pairwise_iou, to_corners

BACKGROUND = "background"
MISSED = "missed"


def operating_point(
    ground_truth: Sequence[Mapping],
    detections: Sequence[Mapping],
    class_names: Sequence[str],
    *,
    score_threshold: float,
    iou_threshold: float = 0.5,
    bounding_box_format: str = "xyxy",
) -> dict:
    """Per-class counts, precision, recall and the detection confusion matrix at one threshold.

    Args:
        ground_truth: one ``{"boxes" (N, 4), "classes" (N,)}`` per image; rows of
            class ``-1`` (KerasCV padding) are ignored.
        detections: one ``{"boxes" (M, 4), "scores" (M,), "classes" (M,)}`` per image,
            in the same order.
        class_names: one name per class id.
        score_threshold: detections scoring below it are dropped.
        iou_threshold: least IoU for a detection to match a ground-truth box.
        bounding_box_format: format of every box (a KerasCV name).

    Returns:
        ``{"score_threshold", "iou_threshold", "class_names", "matrix", "per_class"}``:
        ``matrix`` is an ``int`` array ``(K + 1, K + 1)`` (rows: true class, then
        background; columns: predicted class, then missed); ``per_class`` maps each name to
        ``{"tp", "fp", "fn", "precision", "recall"}`` (precision or recall NaN where
        undefined: no detection, or no ground truth, of that class).

    Raises:
        ValueError: for lists of different lengths, thresholds outside [0, 1] or a class
            id outside ``[0, len(class_names))``.
    """
    if len(ground_truth) != len(detections):
        raise ValueError(
            "ground_truth and detections need one entry per image. Received: "
            f"len(ground_truth)={len(ground_truth)}, len(detections)={len(detections)}"
        )
    if not 0.0 <= iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be in [0, 1]. Received: {iou_threshold=}")
    num_classes = len(class_names)
    matrix = np.zeros((num_classes + 1, num_classes + 1), dtype=int)
    for truth, found in zip(ground_truth, detections, strict=True):
        _match_image(truth, found, matrix, score_threshold, iou_threshold, bounding_box_format)
    tp = np.diag(matrix)[:num_classes]
    fp = matrix[:, :num_classes].sum(axis=0) - tp
    fn = matrix[:num_classes, :].sum(axis=1) - tp
    per_class = {
        name: {
            "tp": int(tp[k]),
            "fp": int(fp[k]),
            "fn": int(fn[k]),
            "precision": _ratio(tp[k], tp[k] + fp[k]),
            "recall": _ratio(tp[k], tp[k] + fn[k]),
        }
        for k, name in enumerate(class_names)
    }
    return {
        "score_threshold": float(score_threshold),
        "iou_threshold": float(iou_threshold),
        "class_names": list(class_names),
        "matrix": matrix,
        "per_class": per_class,
    }


def _ratio(numerator, denominator) -> float:
    return float(numerator / denominator) if denominator else float("nan")


def _valid_classes(classes, num_classes, name):
    classes = np.asarray(classes, dtype=int).reshape(-1)
    bad = classes[(classes < -1) | (classes >= num_classes)]
    if bad.size:
        raise ValueError(
            f"{name} holds class id {int(bad[0])}, outside [0, {num_classes}) of class_names"
        )
    return classes


def _match_image(truth, found, matrix, score_threshold, iou_threshold, bounding_box_format):
    num_classes = matrix.shape[0] - 1
    gt_classes = _valid_classes(truth["classes"], num_classes, "ground_truth classes")
    gt_boxes = np.asarray(truth["boxes"], dtype=np.float64).reshape(-1, 4)[gt_classes >= 0]
    gt_classes = gt_classes[gt_classes >= 0]
    classes = _valid_classes(found["classes"], num_classes, "detections classes")
    scores = np.asarray(found["scores"], dtype=np.float64).reshape(-1)
    boxes = np.asarray(found["boxes"], dtype=np.float64).reshape(-1, 4)
    keep = (scores >= score_threshold) & (classes >= 0)
    order = np.argsort(-scores[keep], kind="stable")
    boxes, classes = boxes[keep][order], classes[keep][order]
    iou = pairwise_iou(
        to_corners(boxes, bounding_box_format), to_corners(gt_boxes, bounding_box_format)
    )
    matched = np.zeros(len(gt_classes), dtype=bool)
    for d, predicted in enumerate(classes):
        candidates = (iou[d] >= iou_threshold) & ~matched
        same = candidates & (gt_classes == predicted)
        pool = same if same.any() else candidates
        if not pool.any():
            matrix[num_classes, predicted] += 1  # background
            continue
        g = int(np.argmax(np.where(pool, iou[d], -1.0)))
        matched[g] = True
        matrix[gt_classes[g], predicted] += 1
    for actual in gt_classes[~matched]:
        matrix[actual, num_classes] += 1  # missed


def per_class_metrics(point: Mapping, ap50: Mapping | None = None) -> dict:
    """``{name: {"precision", "recall", "ap50"}}`` for the classes with ground truth.

    The nested shape the experiment runner flattens to ``per_class.NAME.precision``; a
    class with ground truth but no detection has precision 0 (nothing it said was right).

    Args:
        point: what :func:`operating_point` returns.
        ap50: ``{name: AP@0.5}`` (e.g. :attr:`kdet.metrics.DetectionResult.ap50`), or
            ``None`` to leave ``ap50`` out.

    Example:
        >>> point = operating_point([{"boxes": [[0, 0, 4, 4]], "classes": [0]}],
        ...                         [{"boxes": [], "scores": [], "classes": []}],
        ...                         ["cat"], score_threshold=0.5)
        >>> per_class_metrics(point, {"cat": 0.0})
        {'cat': {'precision': 0.0, 'recall': 0.0, 'ap50': 0.0}}
    """
    metrics = {}
    for name, counts in point["per_class"].items():
        if counts["tp"] + counts["fn"] == 0:
            continue
        precision = 0.0 if np.isnan(counts["precision"]) else counts["precision"]
        metrics[name] = {"precision": precision, "recall": counts["recall"]}
        if ap50 is not None:
            metrics[name]["ap50"] = float(ap50[name])
    return metrics


def _axis_labels(matrix, labels):
    matrix = np.asarray(matrix)
    if matrix.shape != (len(labels) + 1, len(labels) + 1):
        raise ValueError(
            f"matrix must have shape (len(labels) + 1, len(labels) + 1) = "
            f"{(len(labels) + 1, len(labels) + 1)}. Received: matrix.shape={matrix.shape}"
        )
    return matrix, [*labels, BACKGROUND], [*labels, MISSED]


def confusion_rows(matrix, labels: Sequence[str]) -> list[dict[str, str]]:
    """One ``{"actual", "predicted"}`` row per counted detection or miss (DVC's
    ``confusion`` plot template reads these columns).

    Args:
        matrix: ``(K + 1, K + 1)`` counts from :func:`operating_point`.
        labels: the ``K`` class names.

    Example:
        >>> confusion_rows([[1, 0], [2, 0]], ["cat"])
        [{'actual': 'cat', 'predicted': 'cat'}, {'actual': 'background', 'predicted': 'cat'}, \
{'actual': 'background', 'predicted': 'cat'}]
    """
    matrix, actual, predicted = _axis_labels(matrix, labels)
    return [
        {"actual": actual[i], "predicted": predicted[j]}
        for (i, j), count in np.ndenumerate(matrix)
        for _ in range(int(count))
    ]


def plot_detection_confusion(matrix, labels: Sequence[str]) -> Figure:
    """The detection confusion matrix as a labelled heat map (counts in the cells).

    Args:
        matrix: ``(K + 1, K + 1)`` counts from :func:`operating_point`.
        labels: the ``K`` class names.

    Returns:
        A matplotlib ``Figure`` (rows: true class + background; columns: predicted class
        + missed).

    Example:
        >>> figure = plot_detection_confusion([[3, 1], [2, 0]], ["cat"])
        >>> [t.get_text() for t in figure.axes[0].get_yticklabels()]
        ['cat', 'background']
    """
    matrix, actual, predicted = _axis_labels(matrix, labels)
    side = 1.0 + 0.6 * len(actual)
    figure = Figure(figsize=(side + 1.5, side + 1.0))
    axes = figure.add_subplot()
    axes.imshow(matrix, cmap="Blues")
    axes.set_xticks(range(len(predicted)), predicted, rotation=45, ha="right")
    axes.set_yticks(range(len(actual)), actual)
    axes.set_xlabel("predicted")
    axes.set_ylabel("actual")
    threshold = matrix.max() / 2 if matrix.size else 0
    for (i, j), count in np.ndenumerate(matrix):
        colour = "white" if count > threshold else "black"
        axes.text(j, i, str(count), ha="center", va="center", color=colour, fontsize=8)
    axes.set_title("detections at the operating threshold")
    figure.tight_layout()
    return figure
