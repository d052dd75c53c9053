import json

import mlflow
import pytest

from kdet.models.single_box.experiment import run_evaluation, run_training


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
        epochs=2,
        verbose=0,
    )
    assert (tmp_path / "model" / "model.keras").exists()
    assert (tmp_path / "model" / "saved_model" / "saved_model.pb").exists()
    assert json.loads((tmp_path / "model" / "run.json").read_text())["run_id"] == info["run_id"]

    metrics = run_evaluation(
        records_dir=toy_records.root,
        model_dir=tmp_path / "model",
        metrics_path=tmp_path / "metrics.json",
        plots_dir=tmp_path / "plots",
    )
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics
    assert {"mean_iou", "baseline_mean_iou", "class_accuracy", "per_class"} <= set(metrics)
    assert metrics["confusion_matrix"]["labels"] == ["red", "blue"]
    assert (tmp_path / "plots" / "confusion.csv").read_text().count("\n") == 9
    assert (tmp_path / "plots" / "history.csv").exists()

    mlflow.set_tracking_uri(tracking_uri)
    run = mlflow.get_run(info["run_id"])
    assert run.data.params["train.epochs"] == "2"
    assert {"loss", "val_loss", "mean_iou", "baseline_mean_iou", "red_mean_iou"} <= set(
        run.data.metrics
    )
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
