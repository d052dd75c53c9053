"""Precision-recall curves of a :class:`~kdet.metrics.detection.DetectionResult`.

The curves are COCO's 101-point interpolated ones at IoU 0.5, the same points the AP
averages, so the plot and the number agree.

Example:
    >>> from kdet.metrics.detection import evaluate_detections
    >>> result = evaluate_detections([{"boxes": [[0, 0, 8, 8]], "classes": [0]}],
    ...     [{"boxes": [[0, 0, 8, 8]], "scores": [0.7], "classes": [0]}], ["cat"])
    >>> figure = plot_pr_curves(result)
    >>> write_pr_curves(result, "data/metrics/pr_curve.csv")  # doctest: +SKIP
"""

import csv
import json
from pathlib import Path

from matplotlib.figure import Figure


def pr_curve_rows(result, class_names=None, iou_threshold=0.5):
    """Rows ``{"recall", "precision", "class"}`` for every class with ground truth.

    Args:
        result: a ``DetectionResult``.
        class_names: classes to include; default all with ground truth.
        iou_threshold: which evaluated IoU threshold's curve.

    Returns:
        list of dicts, one per curve point.
    """
    if class_names is None:
        class_names = result.classes_with_ground_truth
    rows = []
    for name in class_names:
        recall, precision = result.pr_curve(name, iou_threshold)
        rows += [
            {"recall": float(r), "precision": float(p), "class": name}
            for r, p in zip(recall, precision, strict=True)
        ]
    return rows


def plot_pr_curves(result, class_names=None, iou_threshold=0.5):
    """One figure with the PR curve of each class, AP in the legend.

    Args:
        result: a ``DetectionResult``.
        class_names: classes to draw; default all with ground truth.
        iou_threshold: which evaluated IoU threshold's curves.

    Returns:
        ``matplotlib.figure.Figure`` (no pyplot state, safe in pipelines and threads).
    """
    figure = Figure(figsize=(6, 5))
    axes = figure.add_subplot()
    if class_names is None:
        class_names = result.classes_with_ground_truth
    for name in class_names:
        recall, precision = result.pr_curve(name, iou_threshold)
        ap = precision.mean()
        axes.plot(recall, precision, label=f"{name} (AP{iou_threshold:g}={ap:.3f})")
    axes.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02))
    axes.set_title(f"Precision-recall at IoU {iou_threshold:g}")
    axes.grid(alpha=0.3)
    if class_names:
        axes.legend(loc="lower left")
    return figure


def write_pr_curves(result, path, class_names=None, iou_threshold=0.5):
    """Write the PR curve points for ``dvc plots`` (columns recall, precision, class).

    ``.csv`` writes a header and one row per point; ``.json`` writes a list of row
    objects. In dvc.yaml: ``plots: - path: {x: recall, y: precision}``.

    Args:
        result: a ``DetectionResult``.
        path: output file, ``.csv`` or ``.json``; parent folders are created.
        class_names: classes to include; default all with ground truth.
        iou_threshold: which evaluated IoU threshold's curves.

    Returns:
        The ``Path`` written.
    """
    path = Path(path)
    if path.suffix not in (".csv", ".json"):
        raise ValueError(f"PR curves are written as .csv or .json. Received: path={path}")
    rows = pr_curve_rows(result, class_names, iou_threshold)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".json":
        path.write_text(json.dumps(rows, indent=1))
    else:
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["recall", "precision", "class"])
            writer.writeheader()
            writer.writerows(rows)
    return path
