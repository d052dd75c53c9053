"""A shared MLflow tracking server: train against it, then read the run back."""

import mlflow
import numpy as np
import pytest
import tensorflow as tf
from mlflow.tracking import MlflowClient

from kdet import tracking, training
from kdet.export import export_detector
from tests.scale.processes import VENV_BIN, child_env, free_port, started, wait_http
from tests.scale.strategy_worker import IMAGE_SIZE, shapes_dataset, small_box_regressor

# Slow: a real tracking server process.
pytestmark = pytest.mark.slow

EPOCHS = 2


def box_detector(model):
    """The serving function of the one-box regressor: resize, predict, scale to pixels."""

    def detect(image):
        size = tf.cast(tf.shape(image)[:2], tf.float32)
        resized = tf.image.resize(tf.cast(image, tf.float32) / 255.0, (IMAGE_SIZE, IMAGE_SIZE))
        box = model(resized[tf.newaxis], training=False)[0]
        scale = tf.stack([size[1], size[0], size[1], size[0]])
        return {"boxes": (box * scale)[tf.newaxis], "scores": [1.0], "classes": [0]}

    return detect


def test_training_logs_to_a_tracking_server(tmp_path, monkeypatch):
    port = free_port()
    artifacts = tmp_path / "server-artifacts"
    command = [
        str(VENV_BIN / "mlflow"),
        "server",
        "--backend-store-uri",
        f"sqlite:///{tmp_path / 'server.db'}",
        "--serve-artifacts",
        "--artifacts-destination",
        artifacts.as_uri(),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    log = tmp_path / "server.log"
    # No background job runner: it would start a pool of worker processes for nothing.
    env = child_env(MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    with started(command, log, env=env, cwd=tmp_path) as server:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/health", server, log, timeout=120)
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)

        params = {"train": {"epochs": EPOCHS, "batch_size": 8, "strategy": "default"}}
        with tracking.start_run("shapes", run_name="server-test", params=params) as run:
            model, global_batch = training.build_for_strategy(
                small_box_regressor,
                strategy="default",
                batch_size=8,
                optimizer="adam",
                loss="mse",
            )
            model.fit(
                shapes_dataset(str(tmp_path / "shapes"), global_batch),
                epochs=EPOCHS,
                verbose=0,
                callbacks=training.training_callbacks(log_to_mlflow=True),
            )
            tracking.log_metrics({"mean_iou": 0.5})
            saved = export_detector(tmp_path / "saved_model", box_detector(model), ["shape"], model)
            tracking.log_saved_model(saved)

        client = MlflowClient(tracking_uri=url)
        logged = client.get_run(run.info.run_id)
        assert logged.info.status == "FINISHED"
        assert logged.data.params["train.strategy"] == "default"
        assert logged.data.metrics["mean_iou"] == 0.5
        losses = client.get_metric_history(run.info.run_id, "loss")
        assert len(losses) == EPOCHS and all(np.isfinite(m.value) for m in losses)
        assert client.get_experiment(logged.info.experiment_id).name == "shapes"

        downloaded = mlflow.artifacts.download_artifacts(
            run_id=run.info.run_id, artifact_path="saved_model", dst_path=str(tmp_path / "dl")
        )
    # The server kept the files (proxied artifact storage), not this process.
    assert list(artifacts.rglob("saved_model.pb"))
    served = tf.saved_model.load(downloaded)
    image = tf.constant(np.full((48, 64, 3), 127, np.uint8))
    out = served.signatures["detect_image"](image=image)
    assert out["boxes"].shape == (1, 4)
    assert out["class_names"].numpy().tolist() == [b"shape"]
    expected = box_detector(model)(image)["boxes"].numpy()
    np.testing.assert_allclose(out["boxes"].numpy(), expected, rtol=1e-5)
