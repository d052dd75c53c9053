import keras
import numpy as np
import pytest

from kdet.models import get_model
from kdet.models.rcnn.classifier import build_rcnn_classifier


@pytest.mark.parametrize(
    "backbone,input_size,pool", [("small_cnn", 64, (4, 4)), ("mobilenet_v2", 96, (3, 3))]
)
def test_head_and_output(backbone, input_size, pool):
    model = get_model("rcnn_classifier", num_classes=2, backbone=backbone, input_size=input_size)
    assert model.output_shape == (None, 3)
    assert model.get_layer("head_pool").pool_size == pool
    assert model.get_layer("head_dense").units == 128
    assert model.get_layer("head_dropout").rate == 0.5
    probs = model.predict(np.full((2, input_size, input_size, 3), 128.0), verbose=0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_keras_round_trip(tmp_path):
    model = build_rcnn_classifier(backbone="small_cnn", input_size=32)
    crops = np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 3)).astype(np.float32)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(loaded.predict(crops, verbose=0), model.predict(crops, verbose=0))


def test_bad_arguments():
    with pytest.raises(ValueError, match="backbone must be one of"):
        build_rcnn_classifier(backbone="resnet")
    with pytest.raises(ValueError, match="num_classes"):
        build_rcnn_classifier(num_classes=0, backbone="small_cnn", input_size=32)
