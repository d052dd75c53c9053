"""Every family names the same quantity the same way, in its metrics JSON and its MLflow run,
so the MLflow compare view and ``dvc exp show`` line families up (tiny models, no real
training; each family's end-to-end run is checked in ``tests/test_experiment.py``)."""

import json

import mlflow
import pytest
from PIL import Image

from kdet import tracking
from kdet.datasets.records import Record, RecordSet
from kdet.families import family_names, get_family
from kdet.models.rcnn.detector import RCNNDetector
from kdet.models.rcnn.evaluation import evaluate_detector, write_report
from tests.models.rcnn.conftest import square_image
from tests.models.test_sliding_window import brightness_classifier

SHARED = {
    "mAP50",
    "mAP",
    "mean_iou",
    "baseline_mean_iou",
    "class_accuracy",
    "latency_ms",
    "iou50_share",
    "iou75_share",
}
SINGLE_BOX = {"mean_iou", "baseline_mean_iou", "iou50_share", "iou75_share", "latency_ms"}
# The shared names each family's evaluation writes (a new family adds its line).
REPORTS = {
    "yolov8": {"mAP50", "mAP", "latency_ms"},
    "retinanet": {"mAP50", "mAP", "latency_ms"},
    "rcnn": {"mAP50", "mAP", "latency_ms", "class_accuracy"},
    "fast_rcnn": {"mAP50", "mAP", "latency_ms", "class_accuracy"},
    # its own classifier's class_accuracy (none when it reuses an R-CNN one: init_from)
    "sliding_window": {"mAP50", "mAP", "latency_ms", "class_accuracy"},
    "bbox_regressor": SINGLE_BOX,
    "multiclass": SINGLE_BOX | {"class_accuracy"},
}


def test_every_family_reports_shared_names_and_ranks_by_one():
    assert set(REPORTS) == set(family_names())
    for name in family_names():
        assert REPORTS[name] <= SHARED
        assert get_family(name).rank_by in REPORTS[name], name


def shared_names(metrics: dict, train_numbers: dict) -> set[str]:
    """The shared names an experiment reports: its evaluation's metrics JSON and its training
    numbers (the R-CNN-style classifiers' ``class_accuracy``), both logged to its MLflow run.
    ``tests/test_experiment.py`` checks every family's against :data:`REPORTS`."""
    return (set(metrics) | set(train_numbers)) & SHARED


def logged_metrics(run_id: str) -> dict[str, float]:
    mlflow.set_tracking_uri(tracking.configure())
    return mlflow.get_run(run_id).data.metrics


def test_detector_evaluation_of_the_rcnn_family(tmp_path):
    """R-CNN, Fast R-CNN and sliding windows share ``write_report``; the R-CNN-style stages
    add their classifier's ``class_accuracy``."""
    records = []
    for i, box in enumerate([(16, 20, 44, 52), (4, 4, 30, 34)]):
        Image.fromarray(square_image(box=box)).save(tmp_path / f"img{i}.png")
        records.append(Record(f"img{i}.png", 64, 64, [list(map(float, box))], [0], "test"))
    record_set = RecordSet("squares", ["square"], records, tmp_path)
    proposals = {r.image: r.boxes_array() + [[-2, 1, 2, -1]] for r in records}
    report = evaluate_detector(
        RCNNDetector(brightness_classifier(16)),
        record_set,
        proposals=proposals,
        proposal_seconds={r.image: 0.01 for r in records},
    )
    with tracking.start_run("squares", run_name="rcnn") as run:
        metrics = write_report(
            report,
            metrics_path=tmp_path / "metrics.json",
            plots_dir=tmp_path / "plots",
            extra_metrics={"class_accuracy": 1.0},
        )
        tracking.log_metrics(metrics)
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert set(written) & SHARED == REPORTS["rcnn"]
    assert set(report.as_metrics()) & SHARED == REPORTS["sliding_window"] - {"class_accuracy"}
    assert logged_metrics(run.info.run_id) == pytest.approx(written)
