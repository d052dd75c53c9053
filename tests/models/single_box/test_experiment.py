"""A single-box experiment through the runner: files, MLflow run, figures (tiny model)."""

import json
import shutil

import mlflow
import pytest

from kdet import experiment
from kdet.experiment import Experiment, Layout, flat_metrics
from tests.models.single_box.conftest import make_single_box_records
from tests.runner_helpers import mlflow_run, tiny_row

# Slow: the default suite runs both single-box families through the runner
# (tests/test_experiment.py).
pytestmark = pytest.mark.slow


def test_training_and_evaluation_are_tracked(tmp_path):
    layout = Layout(tmp_path)
    folder = layout.records("toy")
    folder.mkdir(parents=True)
    make_single_box_records(folder)
    row = tiny_row("multiclass", "toy", tmp_path)
    row["train"].update(epochs=2, classes=["red", "blue"])
    exp = Experiment.from_row("toy_multiclass", row)
    numbers = experiment.train(exp, root=tmp_path)
    train_dir = layout.train_dir("toy_multiclass")
    assert (train_dir / "model.keras").exists()
    info = json.loads((train_dir / experiment.RUN_FILE).read_text())
    train_metrics = json.loads(layout.train_metrics("toy_multiclass").read_text())
    assert train_metrics == pytest.approx(numbers)
    assert train_metrics["train_epochs_run"] == 2
    assert {"loss", "val_loss", "train_fit_seconds"} <= set(train_metrics)

    metrics = experiment.evaluate(exp, root=tmp_path)
    assert (layout.saved_model("toy_multiclass") / "saved_model.pb").exists()
    assert json.loads(layout.metrics("toy_multiclass").read_text()) == metrics
    assert {"mean_iou", "baseline_mean_iou", "class_accuracy", "per_class"} <= set(metrics)
    assert 0 < metrics["latency_ms"] <= metrics["latency_p90_ms"]  # the SavedModel's
    assert metrics["confusion_matrix"]["labels"] == ["red", "blue"]
    plots = layout.plots("toy_multiclass")
    assert (plots / "confusion.csv").read_text().count("\n") == 9
    assert (plots / "history.csv").exists()

    run = mlflow_run(info["run_id"])
    assert run.data.params["train.epochs"] == "2"
    logged = run.data.metrics
    assert {"loss", "val_loss", "mean_iou", "latency_ms", "per_class.red.mean_iou"} <= set(logged)
    for name, value in {**flat_metrics(metrics), **flat_metrics(train_metrics)}.items():
        assert logged[name] == pytest.approx(value), name  # the JSON files' names and values
    client = mlflow.MlflowClient()
    assert len(client.get_metric_history(info["run_id"], "loss")) == 2
    artifacts = {a.path for a in client.list_artifacts(info["run_id"], "figures")}
    assert {
        "figures/loss_curves.png",
        "figures/test_predictions.png",
        "figures/confusion.png",
    } <= artifacts
    assert client.list_artifacts(info["run_id"], "saved_model")
    assert client.list_artifacts(info["run_id"], "model")  # the Keras model, with signature

    # evaluation reads only the train folder and the records: a copy elsewhere evaluates too
    shutil.rmtree(layout.saved_model("toy_multiclass"))
    assert experiment.evaluate(exp, root=tmp_path)["mean_iou"] == pytest.approx(metrics["mean_iou"])


def test_flat_metrics_name_nested_numbers_like_dvc():
    nested = {
        "mean_iou": 0.5,
        "test_images": 3,
        "per_class": {"red": {"mean_iou": 0.25}},
        "confusion_matrix": {"labels": ["red"], "counts": [[3]]},
        "note": "text",
    }
    assert flat_metrics(nested) == {
        "mean_iou": 0.5,
        "test_images": 3,
        "per_class.red.mean_iou": 0.25,
    }
