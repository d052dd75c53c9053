"""Tiny untrained models exported as contract SavedModels, built once per session.

The YOLOv8 class head's final biases are drawn at random (seeded): an untrained head's
biases are all equal, so both classes score the same to 1e-7 and argmax would pick a class
by float round-off, which no two runtimes agree on.
"""

import keras
import numpy as np
import pytest

# The deploy extra (pip install -e ".[deploy]"); without it these tests are skipped.
for _module in ("tf2onnx", "onnx", "onnxruntime", "ai_edge_litert"):
    pytest.importorskip(_module)

YOLO_CLASSES = ["cat", "dog"]
BOX_CLASSES = ["airplanes"]


@pytest.fixture(scope="session")
def yolo(tmp_path_factory):
    from kdet.models import get_model
    from kdet.models.yolov8.export import export_yolov8

    keras.utils.set_random_seed(0)
    model = get_model("yolov8", num_classes=2, image_size=64, backbone_size="xs")
    rng = np.random.default_rng(0)
    for layer in model._flatten_layers():
        if isinstance(layer, keras.layers.Conv2D) and layer.filters == 2 and layer.use_bias:
            kernel, bias = layer.get_weights()
            layer.set_weights([kernel, rng.normal(0.0, 2.0, bias.shape).astype("float32")])
    path = tmp_path_factory.mktemp("yolo") / "saved_model"
    export_yolov8(model, path, YOLO_CLASSES, confidence_threshold=0.0)
    return model, str(path)


@pytest.fixture(scope="session")
def single_box(tmp_path_factory):
    from kdet.models import get_model
    from kdet.models.single_box.serving import export_single_box_model

    keras.utils.set_random_seed(0)
    model = get_model("bbox_regressor", backbone="small_cnn", weights=None, image_size=(64, 64))
    path = tmp_path_factory.mktemp("box") / "saved_model"
    export_single_box_model(model, path, BOX_CLASSES)
    return model, str(path)


@pytest.fixture(scope="session")
def images():
    rng = np.random.default_rng(0)
    return [
        rng.integers(0, 256, (48, 80, 3), dtype=np.uint8),
        rng.integers(0, 256, (100, 70, 3), dtype=np.uint8),
        rng.integers(0, 256, (64, 64, 3), dtype=np.uint8),
    ]


RCNN_CLASSES = ["cat", "dog"]


@pytest.fixture(scope="session", params=["rcnn", "fast_rcnn"])
def proposal_model(request, tmp_path_factory):
    """``(family, SavedModel path)``: a tiny R-CNN or Fast R-CNN serving SavedModel (takes
    ``proposals``), every detection kept (``score_threshold=0``)."""
    from kdet.export import export_proposal_detector
    from kdet.models import get_model
    from kdet.models.rcnn.detector import RCNNDetector
    from kdet.models.rcnn.fast_rcnn import FastRCNNDetector

    keras.utils.set_random_seed(0)
    if request.param == "rcnn":
        model = get_model("rcnn_classifier", backbone="small_cnn", input_size=32, num_classes=2)
        detector = RCNNDetector(model, score_threshold=0.0)
    else:
        model = get_model("fast_rcnn", backbone="small_cnn", image_size=64, num_classes=2)
        detector = FastRCNNDetector(model, score_threshold=0.0)
    path = tmp_path_factory.mktemp(request.param) / "saved_model"
    export_proposal_detector(path, detector.detect_eager, RCNN_CLASSES, model)
    return request.param, str(path)


@pytest.fixture(scope="session")
def retinanet():
    """A tiny random KerasHub RetinaNet whose last box-head kernel is scaled by 0.01 (boxes
    stay near their anchors, inside the image) and last class-head kernel by 0.05 (scores
    around 0.5, not saturated at 1.0, where thousands of ties would make NMS pick by
    float round-off)."""
    from kdet.models.retinanet.builder import build_retinanet

    keras.utils.set_random_seed(0)
    model = build_retinanet(num_classes=2, image_size=64)
    for head, scale in ((model.box_head, 0.01), (model.classification_head, 0.05)):
        last = [layer for layer in head._flatten_layers() if isinstance(layer, keras.layers.Conv2D)]
        kernel, bias = last[-1].get_weights()
        last[-1].set_weights([kernel * scale, np.zeros_like(bias)])
    return model
