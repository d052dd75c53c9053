"""OpenCV 5's DNN module reads kdet's ONNX graphs and gives ONNX Runtime's outputs: the *raw*
graphs (fixed float32 input, no NMS; YOLOv8 and single-box) and the single-box *contract*
graph (a dynamic-size ``uint8`` image in, resizing inside). A YOLOv8 contract graph has no
ONNX form at all (in-graph NMS), so there is nothing for OpenCV to read."""

import cv2
import numpy as np
import onnxruntime as ort
import pytest

from kdet import deploy
from tests.deploy.conftest import BOX_CLASSES, YOLO_CLASSES


@pytest.mark.parametrize("family", ["single_box", "yolo"])
def test_opencv_dnn_reads_raw_onnx(request, tmp_path, family):
    model, _ = request.getfixturevalue(family)
    names = BOX_CLASSES if family == "single_box" else YOLO_CLASSES
    path = deploy.export(model, tmp_path / "raw.onnx", class_names=names)
    batch = np.random.default_rng(0).uniform(0, 255, (1, 64, 64, 3)).astype(np.float32)
    net = cv2.dnn.readNetFromONNX(path)
    net.setInput(batch)
    outputs = net.getUnconnectedOutLayersNames()
    got = dict(zip(outputs, net.forward(outputs), strict=True))
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    expected = dict(
        zip(
            [o.name for o in session.get_outputs()],
            session.run(None, {session.get_inputs()[0].name: batch}),
            strict=True,
        )
    )
    assert sorted(got) == sorted(expected) == ["boxes", "scores"]
    for key, value in expected.items():
        np.testing.assert_allclose(got[key].reshape(value.shape), value, atol=1e-3)


def test_opencv_dnn_reads_single_box_contract_onnx(single_box, images, tmp_path):
    path = deploy.export(single_box[1], tmp_path / "contract.onnx")
    net = cv2.dnn.readNetFromONNX(path)
    outputs = net.getUnconnectedOutLayersNames()
    runtime = deploy.Runtime(path)
    for image in images:
        net.setInput(image)
        got = dict(zip(outputs, net.forward(outputs), strict=True))
        expected = runtime(image)
        np.testing.assert_allclose(got["boxes"].reshape(-1, 4), expected["boxes"], atol=1e-3)
        np.testing.assert_allclose(got["scores"].reshape(-1), expected["scores"], atol=1e-3)
        np.testing.assert_array_equal(got["classes"].reshape(-1), expected["classes"])
