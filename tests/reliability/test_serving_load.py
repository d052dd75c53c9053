"""The scoring server of an exported detector under a mixed load
(``pipelines/load_test_serving.py``), and the pyfunc's answer to each bad image.

A bad image fails the request with MLflow's ``INVALID_PARAMETER_VALUE`` (HTTP 400) naming
the image's row and the reason; the slow test serves the model with ``mlflow models serve``
on loopback and checks every answer of 2 clients x 44 requests (no latency assertions).
"""

import base64
import importlib.util
import json
import subprocess
import sys

import mlflow
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException

from kdet import serving, tracking
from tests.scale.processes import REPO_ROOT, child_env
from tests.toy_detector import export_toy_detector

SCRIPT = REPO_ROOT / "pipelines" / "load_test_serving.py"
_spec = importlib.util.spec_from_file_location("load_test_serving", SCRIPT)
load = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(load)
BAD_IMAGES = ("empty_image", "truncated_jpeg", "huge_image", "not_an_image")


@pytest.fixture(scope="module")
def toy_model(tmp_path_factory):
    return export_toy_detector(tmp_path_factory.mktemp("toy") / "saved_model")


def image_cell(kind: str, good: bytes) -> bytes:
    """The bytes a request of ``kind`` sends in its ``image`` column."""
    body = json.loads(load.request_body(kind, good))
    return base64.b64decode(body["dataframe_split"]["data"][0][0])


def test_each_bad_image_is_an_invalid_parameter_naming_its_row(toy_model):
    with tracking.start_run("toy", run_name="log"):
        model = mlflow.pyfunc.load_model(serving.log_detector(toy_model).model_uri)
    good = load.good_images(None)[0]
    assert len(model.predict(pd.DataFrame({"image": [good]}))) == 2  # answered alone
    for kind in BAD_IMAGES:
        with pytest.raises(MlflowException) as caught:
            model.predict(pd.DataFrame({"image": [good, image_cell(kind, good)]}))
        words = load.KINDS[kind][1].replace("image 0:", "image 1:")
        assert words in caught.value.message, kind
        assert caught.value.error_code == "INVALID_PARAMETER_VALUE", kind
        assert caught.value.get_http_status_code() == 400, kind


@pytest.mark.slow
def test_scoring_server_answers_a_mixed_load_correctly(toy_model, tmp_path):
    figures_file = tmp_path / "figures.json"
    command = [sys.executable, str(SCRIPT), str(toy_model), "--clients", "2", "--requests", "44"]
    result = subprocess.run(
        [*command, "--json", str(figures_file)],
        env=child_env(KDET_PROJECT_ROOT=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=1200,  # a bound: a busy machine is slow, never wrong
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    figures = json.loads(figures_file.read_text())
    assert figures["failures"] == [] and figures["server_alive"]
    for kind, row in figures["kinds"].items():
        assert row["requests"] > 0 and row["failed"] == 0, (kind, row)
        codes = {int(code) // 100 for code in row["status"]}
        assert codes == ({2} if kind == "good" else {4}), (kind, row["status"])
    print(result.stdout)
