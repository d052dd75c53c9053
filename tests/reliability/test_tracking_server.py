"""An MLflow tracking server down at the start or going away mid-run never costs training."""

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time

import keras
import matplotlib
import mlflow
import numpy as np
import pytest
import requests

from kdet import tracking, training

matplotlib.use("Agg")


@contextlib.contextmanager
def refusing_uri():
    """An http URI on a loopback port that refuses connections: bound by this socket,
    never listening, and held until the block ends so no other process can take it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{probe.getsockname()[1]}"


def free_port() -> str:
    """A loopback TCP port the OS gave out a moment ago (for a server to bind)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return str(probe.getsockname()[1])


def tiny_model():
    training.set_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(0.01), "mse")
    return model, np.ones((8, 3), "float32"), np.ones((8, 1), "float32")


def test_server_down_at_start_fails_fast_before_any_work(monkeypatch):
    body_ran = False
    sleeps = []  # fast: no retry back-off (asserted without a clock)
    with refusing_uri() as uri:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        monkeypatch.setattr(time, "sleep", sleeps.append)
        with (
            pytest.raises(tracking.TrackingUnavailableError) as caught,
            tracking.start_run("toy", run_name="r"),
        ):
            body_ran = True
    assert not body_ran
    assert sleeps == []
    assert caught.value.where == uri
    assert "not reachable" in caught.value.reason
    assert "unset MLFLOW_TRACKING_URI" in caught.value.reason


def test_server_gone_mid_run_training_goes_on_and_logs_offline(tmp_path, monkeypatch, caplog):
    model, x, y = tiny_model()
    callbacks = training.training_callbacks(log_to_mlflow=True)
    with (
        refusing_uri() as gone,
        tracking.start_run("toy", run_name="r", params={"train": {"lr": 0.01}}) as run,
    ):
        model.fit(x, y, epochs=2, verbose=0, callbacks=callbacks)
        # The server goes away: every later call meets a refused connection.
        monkeypatch.setenv("MLFLOW_TRACKING_URI", gone)
        mlflow.set_tracking_uri(gone)
        with caplog.at_level(logging.WARNING, logger="kdet.tracking"):
            history = model.fit(x, y, epochs=4, initial_epoch=2, verbose=0, callbacks=callbacks)
            tracking.log_metrics({"mAP50": 0.25})
            fig = training.plot_history(history.history)
            tracking.log_figure(fig, "loss.png")
    assert history.epoch == [2, 3]
    folder = tracking.offline_folder(run.info.run_id)
    assert str(folder).startswith(str(tmp_path))
    assert caplog.text.count("Training goes on") == 1
    entries = [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines()]
    steps = [e["step"] for e in entries if e["kind"] == "metrics" and "loss" in e["metrics"]]
    assert steps == [2, 3]
    assert {"kind": "end", "status": "FINISHED"} in entries
    assert (folder / "artifacts" / "figures" / "loss.png").is_file()

    # The store is back: the offline part joins the run.
    store = tracking.default_tracking_uri()
    assert tracking.sync_offline(folder, tracking_uri=store) == len(entries)
    client = mlflow.MlflowClient()
    losses = client.get_metric_history(run.info.run_id, "loss")
    assert sorted(m.step for m in losses) == [0, 1, 2, 3]
    assert client.get_run(run.info.run_id).data.metrics["mAP50"] == 0.25
    assert client.get_run(run.info.run_id).info.status == "FINISHED"
    assert not folder.exists()


def test_a_rejected_call_is_still_an_error(monkeypatch):
    with tracking.start_run("toy", params={"lr": 1}), pytest.raises(mlflow.MlflowException):
        tracking.log_params({"lr": 2})  # a param cannot change: a caller's mistake


@pytest.mark.slow
def test_real_server_killed_mid_run(tmp_path):
    """A real ``mlflow server`` started and killed (slow: it starts in 10-60 s)."""
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            f"sqlite:///{tmp_path}/server.db",
            "--default-artifact-root",
            (tmp_path / "server-artifacts").as_uri(),
            "--host",
            "127.0.0.1",
            "--port",
            port,
            "--workers",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300  # generous: a busy machine starts it slowly
        while time.monotonic() < deadline:
            if server.poll() is not None:
                pytest.fail(f"mlflow server exited with {server.returncode}")
            try:
                if requests.get(f"{uri}/health", timeout=10).ok:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.2)
        else:
            pytest.fail("mlflow server did not start")
        model, x, y = tiny_model()
        callbacks = training.training_callbacks(log_to_mlflow=True)
        with tracking.start_run("toy", tracking_uri=uri) as run:
            model.fit(x, y, epochs=1, verbose=0, callbacks=callbacks)
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
            history = model.fit(x, y, epochs=3, initial_epoch=1, verbose=0, callbacks=callbacks)
        assert history.epoch == [1, 2]
        log = tracking.offline_folder(run.info.run_id) / "log.jsonl"
        steps = [json.loads(line).get("step") for line in log.read_text().splitlines()]
        assert [s for s in steps if s is not None] == [1, 2]
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)


def test_second_fit_with_another_learning_rate_in_one_run():
    model, x, y = tiny_model()
    with tracking.start_run("toy") as run:
        model.fit(x, y, epochs=1, verbose=0, callbacks=[tracking.MetricsCallback()])
        model.optimizer.learning_rate.assign(0.001)  # fine-tuning phase, same run
        model.fit(x, y, epochs=1, verbose=0, callbacks=[tracking.MetricsCallback()])
    params = mlflow.get_run(run.info.run_id).data.params
    assert float(params["optimizer.learning_rate"]) == pytest.approx(0.01)
