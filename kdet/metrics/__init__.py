"""Metrics: box-regression IoU and its mean-box baseline, COCO-style mAP, PR curves, and
per-class precision/recall with a detection confusion matrix at an operating threshold.

These are NumPy and load without TensorFlow; the Keras training metric ``BoxIoU``
lives in :mod:`kdet.metrics.keras_metrics`.

Example:
    >>> from kdet.metrics import evaluate_detections
    >>> gt = [{"boxes": [[0, 0, 8, 8]], "classes": [0]}]
    >>> dt = [{"boxes": [[0, 0, 8, 8]], "scores": [0.9], "classes": [0]}]
    >>> round(evaluate_detections(gt, dt, ["raccoon"]).mAP50, 6)
    1.0
"""

from kdet.metrics.box_regression import (
    box_iou_per_image,
    box_regression_metrics,
    mean_box_baseline,
)
from kdet.metrics.detection import DetectionEvaluator, DetectionResult, evaluate_detections
from kdet.metrics.operating_point import (
    confusion_rows,
    operating_point,
    per_class_metrics,
    plot_detection_confusion,
)
from kdet.metrics.pr_curves import plot_pr_curves, pr_curve_rows, write_pr_curves

__all__ = [
    "DetectionEvaluator",
    "DetectionResult",
    "box_iou_per_image",
    "box_regression_metrics",
    "confusion_rows",
    "evaluate_detections",
    "mean_box_baseline",
    "operating_point",
    "per_class_metrics",
    "plot_detection_confusion",
    "plot_pr_curves",
    "pr_curve_rows",
    "write_pr_curves",
]
