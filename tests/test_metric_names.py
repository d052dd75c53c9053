"""Every family names the same quantity the same way, in its metrics JSON and its MLflow run,
so the MLflow compare view and ``dvc exp show`` line families up (tiny models, no real
training)."""

import json

import mlflow
import pytest
from PIL import Image

from kdet import tracking
from kdet.datasets.records import Record, RecordSet
from kdet.families import FAMILIES
from kdet.models.rcnn.detector import RCNNDetector
from kdet.models.rcnn.evaluation import evaluate_detector, write_report
from kdet.models.single_box.experiment import flat_metrics, run_evaluation, run_training
from tests.models.rcnn.conftest import square_image
from tests.models.single_box.conftest import make_single_box_records
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
    "rcnn": {"mAP50", "mAP", "latency_ms", "class_accuracy"},
    "fast_rcnn": {"mAP50", "mAP", "latency_ms", "class_accuracy"},
    "sliding_window": {"mAP50", "mAP", "latency_ms"},
    "bbox_regressor": SINGLE_BOX,
    "multiclass": SINGLE_BOX | {"class_accuracy"},
}


def test_every_family_reports_shared_names_and_ranks_by_one():
    assert set(REPORTS) == set(FAMILIES)
    for name, family in FAMILIES.items():
        assert REPORTS[name] <= SHARED
        assert family.rank_by in REPORTS[name], name


def logged_metrics(run_id: str) -> dict[str, float]:
    mlflow.set_tracking_uri(tracking.configure())
    return mlflow.get_run(run_id).data.metrics


@pytest.mark.parametrize(
    "family, model, model_options",
    [
        ("bbox_regressor", "bbox_regressor", {"box_units": (8,)}),
        ("multiclass", "multiclass_detector", {"box_units": (8,), "class_units": (8,)}),
    ],
)
def test_single_box_evaluation(tmp_path, family, model, model_options):
    records = make_single_box_records(tmp_path, count=12)
    info = run_training(
        records_dir=records.root,
        model_dir=tmp_path / "model",
        plots_dir=tmp_path / "plots",
        run_name=family,
        experiment="toy",
        model=model,
        class_names=["red", "blue"] if family == "multiclass" else ["red"],
        model_options={"backbone": "small_cnn", **model_options},
        image_size=(64, 64),
        epochs=1,
        verbose=0,
    )
    metrics = run_evaluation(
        records_dir=records.root,
        model_dir=tmp_path / "model",
        metrics_path=tmp_path / "metrics.json",
        plots_dir=tmp_path / "plots",
    )
    written = flat_metrics(json.loads((tmp_path / "metrics.json").read_text()))
    assert written == flat_metrics(metrics)
    assert set(written) & SHARED == REPORTS[family]
    logged = logged_metrics(info["run_id"])
    assert {name: logged[name] for name in written} == pytest.approx(written)


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
    assert set(report.as_metrics()) & SHARED == REPORTS["sliding_window"]
    assert logged_metrics(run.info.run_id) == pytest.approx(written)
