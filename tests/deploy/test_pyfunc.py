"""The MLflow pyfunc model of ONNX and LiteRT artifacts answers as :class:`kdet.deploy.Runtime`
does (same boxes to 1e-4 px: the same graph, run by the same engine)."""

import cv2
import mlflow
import numpy as np
import pandas as pd
import pytest

from kdet import deploy, tracking
from kdet.deploy.artifacts import log_model
from kdet.errors import KdetError
from tests.deploy.conftest import BOX_CLASSES


def png_bytes(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    assert ok
    return data.tobytes()


def assert_pyfunc_matches_runtime(path, images):
    with tracking.start_run("shapes", run_name="deploy"):
        info = log_model(path, name="detector_artifact")
    model = mlflow.pyfunc.load_model(info.model_uri)
    frame = model.predict(pd.DataFrame({"image": [png_bytes(image) for image in images]}))
    runtime = deploy.Runtime(path)
    for index, image in enumerate(images):
        expected = runtime(image)
        got = frame[frame["image_index"] == index]
        assert len(got) == len(expected["boxes"])
        np.testing.assert_allclose(
            got[["x1", "y1", "x2", "y2"]].values, expected["boxes"], atol=1e-4
        )
        np.testing.assert_allclose(got["score"].values, expected["scores"], atol=1e-6)
        assert got["class_id"].tolist() == expected["classes"].tolist()
        assert got["class_name"].tolist() == list(expected["class_names"])
    return frame


@pytest.mark.parametrize("name", ["contract.onnx", "contract.tflite", "raw.onnx", "raw.tflite"])
def test_single_box_artifacts_serve_as_pyfunc(single_box, images, tmp_path, name):
    model, saved_model = single_box
    source = saved_model if name.startswith("contract") else model
    format = "onnx" if name.endswith(".onnx") else "litert"
    path = deploy.export(source, tmp_path / name, format=format, class_names=BOX_CLASSES)
    frame = assert_pyfunc_matches_runtime(path, images)
    assert frame["image_index"].tolist() == [0, 1, 2]


def test_the_pyfunc_model_carries_its_code_and_engine(single_box, tmp_path):
    path = deploy.export(single_box[1], tmp_path / "m.tflite", format="litert")
    with tracking.start_run("shapes", run_name="deploy"):
        info = log_model(path)
    local = mlflow.artifacts.download_artifacts(info.model_uri, dst_path=str(tmp_path / "dl"))
    files = {p.relative_to(local).as_posix() for p in __import__("pathlib").Path(local).rglob("*")}
    assert {"code/postprocess.py", "code/selective_search.py"} <= files
    assert {"artifacts/m.tflite", "artifacts/m.classes.json"} <= files
    requirements = (tmp_path / "dl" / "requirements.txt").read_text()
    assert "ai-edge-litert==" in requirements and "tensorflow" not in requirements


def test_a_broken_artifact_is_refused_naming_it(tmp_path):
    (tmp_path / "cut.onnx").write_bytes(b"not onnx")
    with pytest.raises(KdetError, match="cut.onnx: not a readable ONNX model"):
        log_model(tmp_path / "cut.onnx")


def test_rcnn_onnx_serves_as_pyfunc_with_its_proposals(proposal_model, images, tmp_path):
    """The served model runs selective search with the settings the ONNX file carries."""
    path = deploy.export(proposal_model[1], tmp_path / "m.onnx", proposals={"mode": "single"})
    frame = assert_pyfunc_matches_runtime(path, images)
    assert len(frame) > 0
