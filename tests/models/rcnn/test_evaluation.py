import json

import numpy as np
import pytest

from kdet.datasets.records import Record, RecordSet
from kdet.models.rcnn.detector import RCNNDetector
from kdet.models.rcnn.evaluation import (
    EvaluationReport,
    evaluate_detector,
    pick_score_threshold,
    write_report,
)
from tests.metrics.test_detection import _pycocotools  # the metrics helper's COCOeval oracle
from tests.models.test_sliding_window import brightness_classifier


@pytest.fixture
def jittered_proposals(square_records):
    """Per image: shifted copies of the box (IoU from ~0.9 down to ~0.3) and background."""
    rng = np.random.default_rng(3)
    proposals = {}
    for record in square_records.records:
        box = record.boxes_array()[0]
        shifts = rng.uniform(-9, 9, (12, 4)).astype(np.float32)
        boxes = np.concatenate([box + shifts, [[0, 0, 12, 12], [50, 0, 64, 14]]])
        proposals[record.image] = np.clip(boxes, 0, 64).astype(np.float32)
    return proposals


def test_rcnn_outputs_evaluate_like_pycocotools(square_records, jittered_proposals, tmp_path):
    detector = RCNNDetector(
        brightness_classifier(16), score_threshold=0.5, iou_threshold=0.8, max_detections=10
    )
    seconds = {r.image: 0.25 for r in square_records.records}
    report = evaluate_detector(
        detector, square_records, proposals=jittered_proposals, proposal_seconds=seconds
    )
    assert all(len(d["boxes"]) >= 2 for d in report.detections)  # duplicates survive IoU 0.8
    truth = [
        {"boxes": r.boxes_array(), "classes": r.classes_array()} for r in square_records.records
    ]
    stats, _ = _pycocotools(truth, report.detections, num_classes=1)
    assert 0 < report.result.mAP < report.result.mAP50 <= 1
    assert report.result.mAP == pytest.approx(stats[0], abs=1e-6)
    assert report.result.mAP50 == pytest.approx(stats[1], abs=1e-6)
    assert report.proposal_ms.tolist() == [250.0] * 4
    assert report.latency_ms == pytest.approx(250.0 + report.detector_ms.mean())

    metrics = write_report(report, metrics_path=tmp_path / "m.json", plots_dir=tmp_path / "plots")
    assert json.loads((tmp_path / "m.json").read_text()) == pytest.approx(metrics)
    assert {"mAP50", "mAP", "latency_ms", "AP50/square"} <= set(metrics)
    assert (tmp_path / "plots" / "pr_curve.csv").read_text().startswith("recall,precision")


def test_missing_proposal_timing_is_an_error(square_records, jittered_proposals):
    detector = RCNNDetector(brightness_classifier(16))
    with pytest.raises(KeyError, match="img0.png"):
        evaluate_detector(
            detector, square_records, proposals=jittered_proposals, proposal_seconds={"x": 1.0}
        )


def test_score_threshold_with_the_best_f1():
    box, elsewhere = [0.0, 0, 10, 10], [30.0, 30, 40, 40]
    records = RecordSet("t", ["a"], [Record(f"{i}.jpg", 50, 50, [box], [0]) for i in range(2)])
    detections = [
        {"boxes": np.array([box, elsewhere]), "scores": np.array([0.9, 0.8]), "classes": [0, 0]},
        {"boxes": np.array([box, elsewhere]), "scores": np.array([0.6, 0.3]), "classes": [0, 0]},
    ]
    report = EvaluationReport(None, detections, np.zeros(2), np.zeros(2))
    # Keeping 0.9, 0.8 and 0.6: 2 right, 1 wrong -> F1 0.8 (all: 0.67, above 0.7: 0.5).
    threshold, f1 = pick_score_threshold(report, records)
    assert threshold == pytest.approx(0.45) and f1 == pytest.approx(0.8)
    none = EvaluationReport(
        None,
        [{"boxes": np.zeros((0, 4)), "scores": np.zeros(0), "classes": []}] * 2,
        np.zeros(2),
        np.zeros(2),
    )
    assert pick_score_threshold(none, records) == (0.0, 0.0)
