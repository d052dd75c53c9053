import json

import mlflow
import pytest

from kdet.models.single_box.experiment import flat_metrics, run_evaluation, run_training


@pytest.fixture
def tracking_uri(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("KDET_PROJECT_ROOT", str(tmp_path))
    return uri


def test_training_and_evaluation_are_tracked(toy_records, tmp_path, tracking_uri):
    info = run_training(
        records_dir=toy_records.root,
        model_dir=tmp_path / "model",
        plots_dir=tmp_path / "plots",
        run_name="toy_multiclass",
        experiment="toy",
        params={"train": {"epochs": 2}},
        model="multiclass_detector",
        model_options={"backbone": "small_cnn", "box_units": (8,), "class_units": (8,)},
        image_size=(64, 64),
        metrics_path=tmp_path / "train_metrics.json",
        epochs=2,
        verbose=0,
    )
    assert (tmp_path / "model" / "model.keras").exists()
    assert (tmp_path / "model" / "saved_model" / "saved_model.pb").exists()
    assert json.loads((tmp_path / "model" / "run.json").read_text())["run_id"] == info["run_id"]

    train_metrics = json.loads((tmp_path / "train_metrics.json").read_text())
    assert train_metrics["train_epochs_run"] == 2
    assert {"loss", "val_loss", "train_fit_seconds"} <= set(train_metrics)

    metrics = run_evaluation(
        records_dir=toy_records.root,
        model_dir=tmp_path / "model",
        metrics_path=tmp_path / "metrics.json",
        plots_dir=tmp_path / "plots",
    )
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics
    assert {"mean_iou", "baseline_mean_iou", "class_accuracy", "per_class"} <= set(metrics)
    assert 0 < metrics["latency_ms"] <= metrics["latency_p90_ms"]  # the SavedModel's
    assert metrics["confusion_matrix"]["labels"] == ["red", "blue"]
    assert (tmp_path / "plots" / "confusion.csv").read_text().count("\n") == 9
    assert (tmp_path / "plots" / "history.csv").exists()

    mlflow.set_tracking_uri(tracking_uri)
    run = mlflow.get_run(info["run_id"])
    assert run.data.params["train.epochs"] == "2"
    logged = run.data.metrics
    assert {"loss", "val_loss", "mean_iou", "latency_ms", "per_class.red.mean_iou"} <= set(logged)
    for name, value in {**flat_metrics(metrics), **train_metrics}.items():
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
    versions = client.search_model_versions("name='toy_multiclass_detector'")
    assert versions and versions[0].run_id == info["run_id"]


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
