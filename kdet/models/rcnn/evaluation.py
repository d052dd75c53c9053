"""Running a detector over a record set: mAP, PR curves and per-image latency.

Works for every detector of this family (R-CNN, Fast R-CNN, sliding windows): each takes
one RGB ``uint8`` image (and, for proposal-based ones, its proposals) and returns
``{"boxes", "scores", "classes"}``. Accuracy comes from :mod:`kdet.metrics` (COCO-style,
checked against pycocotools there).

Example:
    >>> report = evaluate_detector(  # doctest: +SKIP
    ...     rcnn, records.split("test"), proposals=proposals, proposal_seconds=timing
    ... )
    >>> report.result.mAP50, report.latency_ms  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from kdet.datasets.records import RecordSet
from kdet.metrics import DetectionResult, evaluate_detections, operating_point, write_pr_curves
from kdet.models.rcnn.proposals import read_image


@dataclasses.dataclass
class EvaluationReport:
    """Detections, their COCO-style result and timings of one detector on a record set.

    Attributes:
        result: :class:`kdet.metrics.DetectionResult` (``mAP50``, ``mAP``, PR curves).
        detections: one ``{"boxes", "scores", "classes"}`` NumPy dict per image.
        detector_ms: per-image milliseconds of the detector call (after a warm-up call).
        proposal_ms: per-image milliseconds of the proposals (zeros without proposals).
    """

    result: DetectionResult
    detections: list[dict[str, np.ndarray]]
    detector_ms: np.ndarray
    proposal_ms: np.ndarray

    @property
    def latency_ms(self) -> float:
        """Mean per-image milliseconds, proposals included."""
        return float(np.mean(self.detector_ms + self.proposal_ms))

    def as_metrics(self) -> dict[str, float]:
        """``mAP50``, ``mAP``, per-class APs and the latencies, for JSON and MLflow."""
        return {
            **self.result.as_metrics(),
            "latency_ms": self.latency_ms,
            "detector_ms": float(np.mean(self.detector_ms)),
            "proposal_ms": float(np.mean(self.proposal_ms)),
        }


def evaluate_detector(
    detector: Callable,
    record_set: RecordSet,
    *,
    proposals: dict[str, np.ndarray] | None = None,
    proposal_seconds: dict[str, float] | None = None,
    max_detections: int = 100,
) -> EvaluationReport:
    """Detect on every image of ``record_set`` and evaluate against its boxes.

    Args:
        detector: ``detector(image)`` or, with ``proposals``, ``detector(image,
            proposals)``; returns ``{"boxes": xyxy pixels, "scores", "classes"}``.
        record_set: images and ground truth (e.g. ``records.split("test")``).
        proposals: ``{image: (N, 4) xyxy}``, precomputed (selective search runs outside
            the graph); ``None`` for detectors that need none.
        proposal_seconds: ``{image: seconds}`` the proposals took (measured when they
            were computed); added to the latency.
        max_detections: COCO's maxDets for the evaluation.

    Returns:
        An :class:`EvaluationReport`.
    """
    ground_truth, detections, detector_ms, proposal_ms = [], [], [], []
    warm = False
    for record in record_set.records:
        image = read_image(record_set.image_path(record))
        args = (image,) if proposals is None else (image, proposals[record.image])
        if not warm:  # the first call traces the graph; keep it out of the timings
            detector(*args)
            warm = True
        start = time.perf_counter()
        out = {key: np.asarray(value) for key, value in detector(*args).items()}
        detector_ms.append((time.perf_counter() - start) * 1000)
        proposal_ms.append(1000 * proposal_seconds[record.image] if proposal_seconds else 0.0)
        detections.append(out)
        ground_truth.append({"boxes": record.boxes_array(), "classes": record.classes_array()})
    result = evaluate_detections(
        ground_truth, detections, record_set.class_names, max_detections=max_detections
    )
    return EvaluationReport(result, detections, np.asarray(detector_ms), np.asarray(proposal_ms))


def pick_score_threshold(report: EvaluationReport, record_set: RecordSet) -> tuple[float, float]:
    """The score threshold with the best F1 of ``report``'s detections on ``record_set``.

    F1 pools every class (a detection is right at IoU >= 0.5 with a box of its class).
    The candidates lie midway between consecutive detection scores, so the chosen one
    keeps the same detections whether a detector keeps scores above or at least equal to
    it; ties go to the lowest. Pick it on validation images, not the test split.

    Returns:
        ``(threshold, f1)``; ``(0.0, 0.0)`` when nothing was detected.

    Example:
        >>> report = evaluate_detector(rcnn, val_records, proposals=proposals)  # doctest: +SKIP
        >>> threshold, f1 = pick_score_threshold(report, val_records)  # doctest: +SKIP
    """
    truth = [{"boxes": r.boxes_array(), "classes": r.classes_array()} for r in record_set.records]
    scores = np.unique(np.concatenate([d["scores"] for d in report.detections] + [[]]))
    if len(scores) == 0:
        return 0.0, 0.0
    candidates = np.concatenate([[scores[0] / 2], (scores[:-1] + scores[1:]) / 2])
    best = (-1.0, 0.0)
    for threshold in candidates:
        point = operating_point(
            truth, report.detections, record_set.class_names, score_threshold=threshold
        )
        counts = point["per_class"].values()
        tp = sum(c["tp"] for c in counts)
        wrong = sum(c["fp"] + c["fn"] for c in counts)
        f1 = 2 * tp / (2 * tp + wrong) if tp else 0.0
        if f1 > best[0]:
            best = (f1, float(threshold))
    return best[1], best[0]


def write_report(
    report: EvaluationReport,
    *,
    metrics_path: str | os.PathLike,
    plots_dir: str | os.PathLike,
    extra_metrics: dict[str, float] | None = None,
) -> dict[str, float]:
    """Write a report's metrics JSON and PR-curve CSV (for ``dvc metrics``/``dvc plots``).

    Returns:
        The metrics written (``extra_metrics`` merged in).
    """
    metrics = {**report.as_metrics(), **(extra_metrics or {})}
    metrics_path = Path(metrics_path)
    metrics_path.parent.mkdir(parents=True, exist_ok=True)
    metrics_path.write_text(json.dumps(metrics, indent=2, sort_keys=True))
    write_pr_curves(report.result, Path(plots_dir) / "pr_curve.csv")
    return metrics
