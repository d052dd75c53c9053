import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import cv2
import mlflow
import numpy as np
import pandas as pd
import pytest

from kdet import serving, tracking
from kdet.errors import KdetError
from kdet.predict import load_detector
from tests.mirror_images import raccoon_images
from tests.toy_detector import (
    WHOLE_IMAGE_SCORE,
    export_toy_detector,
    export_toy_proposal_detector,
)


@pytest.fixture(scope="module")
def toy_model(tmp_path_factory):
    return export_toy_detector(tmp_path_factory.mktemp("toy") / "saved_model")


def jpeg_bytes(height, width):
    ok, data = cv2.imencode(".jpg", np.zeros((height, width, 3), np.uint8))
    assert ok
    return data.tobytes()


def test_pyfunc_model_answers_per_image_in_its_pixels(toy_model):
    with tracking.start_run("toy", run_name="log"):
        info = serving.log_detector(toy_model)
    model = mlflow.pyfunc.load_model(info.model_uri)
    images = pd.DataFrame({"image": [jpeg_bytes(30, 50), jpeg_bytes(64, 20)]})
    everything = model.predict(images)
    assert len(everything) == 4
    strong = model.predict(images, params={"score_threshold": 0.5})
    assert strong["image_index"].tolist() == [0, 1]
    assert strong[["x1", "y1", "x2", "y2"]].values.tolist() == [[0, 0, 50, 30], [0, 0, 20, 64]]
    assert strong["class_name"].tolist() == ["dog", "dog"]
    assert strong["class_id"].tolist() == [1, 1]
    assert strong["score"].tolist() == pytest.approx([WHOLE_IMAGE_SCORE] * 2)


def test_not_a_saved_model_is_refused(tmp_path):
    with pytest.raises(KdetError, match="no saved_model.pb"):
        serving.log_detector(tmp_path)


def test_register_and_move_champion_to_best_version(toy_model, tmp_path):
    versions = {}
    with tracking.start_run("toy", run_name="log"):
        info = serving.log_detector(toy_model)
    for family, map50, latency in [("a", 0.4, 30.0), ("b", 0.6, 50.0), ("a", 0.5, 20.0)]:
        version = tracking.register_version(
            info.model_uri,
            "toy",
            metrics={"mAP50": map50, "latency_ms": latency},
            tags={"family": family},
        )
        versions[(family, map50)] = version.version
    client = mlflow.MlflowClient()
    best = tracking.promote_best("toy", "mAP50")
    assert best.version == versions[("b", 0.6)]
    assert client.get_model_version_by_alias("toy", "champion").version == best.version
    fastest = tracking.promote_best("toy", "latency_ms", greater_is_better=False, alias="fast")
    assert fastest.version == versions[("a", 0.5)]
    best_a = tracking.promote_best("toy", "mAP50", alias="best_a", where={"family": "a"})
    assert best_a.version == versions[("a", 0.5)]
    assert tracking.promote_best("toy", "no_such_metric") is None
    assert client.get_model_version("toy", best.version).tags["metric.mAP50"] == "0.6"


def test_models_resolve_from_folder_uri_alias_and_name(toy_model, tmp_path):
    with tracking.start_run("toy", run_name="publish") as run:
        published = serving.publish_detector(
            toy_model, dataset="toy", family="toy", metrics={"mAP50": 0.7}
        )
        tracking.log_saved_model(toy_model)
    assert published["version"] == published["alias_version"] == "1"
    for model in (
        toy_model,
        f"runs:/{run.info.run_id}/saved_model",
        published["model_uri"],
        "models:/toy/1",
        "models:/toy@champion",
        "toy",
    ):
        detections = load_detector(model)(np.zeros((10, 16, 3), np.uint8), 0.5)
        assert detections["boxes"].tolist() == [[0, 0, 16, 10]], model
    with pytest.raises(KdetError, match="no registered model has this name"):
        serving.local_saved_model("no_such_model")
    with pytest.raises(KdetError, match="cannot download the model"):
        serving.local_saved_model("models:/toy/9")


def free_port() -> int:
    """A loopback TCP port the OS gave out a moment ago (bound to port 0, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(server, url, timeout_s):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"scoring server exited with {server.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=2) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.5)
    pytest.fail(f"scoring server not up after {timeout_s} s")


def stop(server):
    """End the server and the uvicorn worker it started (its own process group)."""
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def test_scoring_server_answers_a_posted_mirror_image(toy_model, tmp_path):
    [image] = raccoon_images(tmp_path / "images", 1)
    height, width = cv2.imread(str(image)).shape[:2]
    with tracking.start_run("raccoon", run_name="publish"):
        serving.publish_detector(toy_model, dataset="raccoon", family="toy", metrics={"mAP50": 1})
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # As in an activated venv: MLflow starts `uvicorn` from PATH.
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    env = {**os.environ, "PATH": path, "MLFLOW_TRACKING_URI": tracking.default_tracking_uri()}
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", "models:/raccoon@champion"]
    command += ["--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)]
    server = subprocess.Popen(
        command,
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "server.log", "wb"),  # noqa: SIM115 (closed with the process)
        start_new_session=True,
    )
    try:
        wait_until_up(server, url, timeout_s=300)  # generous: a busy machine is slow
        body = {
            "dataframe_split": {
                "columns": ["image"],
                "data": [[base64.b64encode(image.read_bytes()).decode()]],
            },
            "params": {"score_threshold": 0.5},
        }
        request = urllib.request.Request(
            f"{url}/invocations",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=300) as answer:
            predictions = json.loads(answer.read())["predictions"]
    finally:
        stop(server)
    assert len(predictions) == 1, predictions
    [detection] = predictions
    assert [detection[k] for k in ("x1", "y1", "x2", "y2")] == [0, 0, width, height]
    assert (detection["image_index"], detection["class_id"], detection["class_name"]) == (
        0,
        1,
        "dog",
    )
    assert detection["score"] == pytest.approx(WHOLE_IMAGE_SCORE)


def test_pyfunc_computes_proposals_for_proposal_taking_models(tmp_path):
    [image] = raccoon_images(tmp_path / "images", 1)
    height, width = cv2.imread(str(image)).shape[:2]
    path = export_toy_proposal_detector(tmp_path / "proposal_model")
    with tracking.start_run("raccoon", run_name="rcnn-like"):
        info = serving.log_detector(path, proposals={"mode": "single", "max_side": 100})
    model = mlflow.pyfunc.load_model(info.model_uri)
    answer = model.predict(pd.DataFrame({"image": [image.read_bytes()]}))
    assert len(answer) == 1 and answer["class_name"][0] == "cat"
    x1, y1, x2, y2 = answer[["x1", "y1", "x2", "y2"]].values[0]
    assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
    assert (x2 - x1) * (y2 - y1) > 0.25 * width * height  # the largest proposal


def test_cli_publish_registers_and_moves_the_champion(toy_model, tmp_path, capsys):
    from kdet import cli

    argv = ["publish", toy_model, "--dataset", "shapes", "--family", "toy"]
    for index, map50 in enumerate([0.5, 0.8, 0.6]):
        metrics = tmp_path / f"m{index}.json"
        metrics.write_text(json.dumps({"mAP50": map50, "latency_ms": 3.0, "note": "text"}))
        assert cli.main([*argv, "--metrics", str(metrics)]) == 0
        result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert result["version"] == str(index + 1)
    assert result["alias_version"] == "2"
    version = mlflow.MlflowClient().get_model_version_by_alias("shapes", "champion")
    assert (str(version.version), version.tags["family"], version.tags["dataset"]) == (
        "2",
        "toy",
        "shapes",
    )
    run = mlflow.get_run(result["run_id"])
    assert run.data.metrics == {"mAP50": 0.6, "latency_ms": 3.0}
    assert cli.main([*argv, "--metrics", str(metrics), "--registered-model", "shapes_toy"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (result["registered_model"], result["version"], result["alias_version"]) == (
        "shapes_toy",
        "1",
        "1",
    )
    assert cli.main([*argv, "--metrics", str(metrics), "--metric", "mAP"]) == 1
    assert "has no numeric 'mAP' to rank versions by" in capsys.readouterr().err
