"""The :class:`~kdet.families.Evaluation` every multi-box detector family returns.

YOLOv8, R-CNN, Fast R-CNN and the sliding-window detector all end their ``evaluate`` the
same way: COCO-style metrics and PR curves over every detection (low threshold), then the
detector at its operating threshold (the one its serving SavedModel uses): per-class
precision, recall and AP@0.5 (``metrics["per_class"]``), the detection confusion matrix
(``detection_confusion.png`` and ``confusion.csv``) and a grid of the first test
images with the detections above that threshold (``predictions.png``).

Example:
    >>> evaluation = detector_evaluation(  # doctest: +SKIP
    ...     records.split("test"), predictions, result, operating_threshold=0.25
    ... )
    >>> evaluation.metrics["per_class"]["raccoon"]  # doctest: +SKIP
    {'precision': 0.9, 'recall': 0.8, 'ap50': 0.85}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from kdet.datasets.records import RecordSet
from kdet.families import Evaluation
from kdet.metrics import (
    DetectionResult,
    confusion_rows,
    operating_point,
    per_class_metrics,
    plot_detection_confusion,
    plot_pr_curves,
)
from kdet.visualize import prediction_grid


def detector_evaluation(
    record_set: RecordSet,
    predictions: Sequence[Mapping],
    result: DetectionResult,
    *,
    operating_threshold: float,
    metrics: Mapping | None = None,
) -> Evaluation:
    """Metrics, figures and tables of a detector's predictions on ``record_set``.

    Args:
        record_set: the evaluated images and their ground truth (the test split).
        predictions: one ``{"boxes" xyxy pixels, "scores", "classes"}`` per record, at
            the evaluation's low score threshold (they are filtered here).
        result: the COCO-style result of ``predictions`` (mAP, AP@0.5, PR curves).
        operating_threshold: the serving score threshold; precision, recall, the
            confusion matrix and the grid count only detections scoring at least this.
        metrics: the family's metrics (default ``result.as_metrics()``); ``per_class``,
            ``operating_threshold`` and ``test_images`` are added.

    Returns:
        An :class:`~kdet.families.Evaluation` with ``pr_curves.png``, ``predictions.png``
        and ``detection_confusion.png`` figures and the ``confusion.csv`` table.
    """
    names = list(record_set.class_names)
    truth = [{"boxes": r.boxes_array(), "classes": r.classes_array()} for r in record_set.records]
    point = operating_point(truth, predictions, names, score_threshold=operating_threshold)
    return Evaluation(
        metrics={
            **(result.as_metrics() if metrics is None else metrics),
            "test_images": len(record_set),
            "operating_threshold": float(operating_threshold),
            "per_class": per_class_metrics(point, result.ap50),
        },
        figures={
            "pr_curves.png": plot_pr_curves(result),
            "predictions.png": prediction_grid(
                record_set, predictions, score_threshold=operating_threshold
            ),
            "detection_confusion.png": plot_detection_confusion(point["matrix"], names),
        },
        tables={"confusion.csv": confusion_rows(point["matrix"], names)},
        pr_result=result,
    )
