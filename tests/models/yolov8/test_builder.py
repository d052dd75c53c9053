import keras
import numpy as np
import pytest

from kdet.errors import DownloadError
from kdet.models import get_model, list_models
from kdet.models.yolov8 import build_yolov8, build_yolov8_backbone


@pytest.mark.parametrize("size", ["xs", "s", "m"])
def test_backbone_sizes_match_kerascv_presets(size):
    import keras_cv

    expected = keras_cv.models.YOLOV8Backbone.presets[f"yolo_v8_{size}_backbone"]
    backbone = build_yolov8_backbone(size, 64)
    assert backbone.count_params() == expected["metadata"]["params"]


def test_registered_and_outputs_per_anchor():
    assert "yolov8" in list_models()
    model = get_model("yolov8", num_classes=3, image_size=(64, 96))
    out = model(np.zeros((2, 64, 96, 3), "float32"))
    anchors = sum((64 // s) * (96 // s) for s in (8, 16, 32))
    assert out["boxes"].shape == (2, anchors, 64)
    assert out["classes"].shape == (2, anchors, 3)


def test_class_prior_lowers_initial_scores():
    images = np.random.default_rng(0).uniform(0, 255, (1, 64, 64, 3)).astype("float32")
    keras.utils.set_random_seed(0)
    with_prior = build_yolov8(num_classes=2, image_size=64)
    keras.utils.set_random_seed(0)
    stock = build_yolov8(num_classes=2, image_size=64, objects_per_image_prior=None)
    stride8 = slice(0, 64)  # the 8x8 stride-8 anchors come first
    assert float(np.mean(with_prior(images)["classes"][0, stride8])) < 0.1
    assert float(np.mean(stock(images)["classes"][0, stride8])) > 0.3


def test_keras_round_trip(tmp_path):
    model = build_yolov8(num_classes=2, image_size=64, confidence_threshold=0.3, fpn_depth=1)
    images = np.random.default_rng(1).uniform(0, 255, (1, 64, 64, 3)).astype("float32")
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    for key in ("boxes", "classes"):
        np.testing.assert_allclose(loaded(images)[key], model(images)[key], atol=1e-5)
    assert loaded.prediction_decoder.confidence_threshold == 0.3
    assert loaded.num_classes == 2 and loaded.fpn_depth == 1


def test_local_weights_file(tmp_path):
    model = build_yolov8(num_classes=2, image_size=64)
    path = tmp_path / "yolo.weights.h5"
    model.save_weights(path)
    again = build_yolov8(num_classes=2, image_size=64, weights=str(path))
    images = np.full((1, 64, 64, 3), 128.0, "float32")
    np.testing.assert_allclose(again(images)["classes"], model(images)["classes"], atol=1e-6)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"image_size": 100}, "multiple of 32"),
        ({"backbone_size": "huge"}, "Unknown backbone size"),
        ({"weights": "/nonexistent/yolo.weights.h5"}, "existing .weights.h5"),
        ({"num_classes": 0}, "num_classes"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_yolov8(**{"num_classes": 2, "image_size": 64, **kwargs})


def test_preset_offline_names_the_alternatives(monkeypatch):
    import keras_cv

    def offline(*args, **kwargs):
        raise ConnectionError("no route to www.kaggle.com")

    monkeypatch.setattr(keras_cv.models.YOLOV8Backbone, "from_preset", offline)
    with pytest.raises(DownloadError, match="weights=None"):
        build_yolov8(num_classes=2, image_size=64, weights="yolo_v8_xs_backbone_coco")
