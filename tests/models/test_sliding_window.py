import keras
import numpy as np
import pytest

from kdet.models import get_model
from kdet.models.rcnn.labelling import iou_matrix
from kdet.models.sliding_window import SlidingWindowDetector, pyramid_windows
from tests.models.rcnn.conftest import square_image


def test_windows_cover_each_level_and_stay_inside():
    windows = pyramid_windows((64, 96), window_size=(32, 32), step=16, scale=2.0).numpy()
    # level 0: 3 x 5 windows of 32; level 1 (32 x 48): 1 x 2 windows, i.e. 64 px in the image.
    assert len(windows) == 15 + 2
    assert windows[:, 2].max() <= 96 and windows[:, 3].max() <= 64
    assert windows[-1].tolist() == [32, 0, 96, 64]
    half = pyramid_windows((64, 96), window_size=(32, 32), step=16, scale=2.0, image_side=48)
    assert half.numpy()[0].tolist() == [0, 0, 64, 64]  # the image is first halved
    assert pyramid_windows((20, 20), window_size=(32, 32)).shape == (0, 4)
    with pytest.raises(ValueError, match="scale must be > 1"):
        pyramid_windows((64, 64), scale=1.0)


def brightness_classifier(size):
    """A fixed classifier: P(object) rises with the crop's mean brightness."""
    inputs = keras.Input((size, size, 3))
    x = keras.layers.GlobalAveragePooling2D()(inputs)
    x = keras.layers.Dense(1, use_bias=False)(x)
    outputs = keras.layers.Dense(2, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    model.layers[2].set_weights([np.ones((3, 1)) / 3])
    model.layers[3].set_weights([np.array([[-0.01, 0.01]]), np.array([1.0, -1.0])])
    return model


def test_finds_the_bright_square():
    image = square_image(size=96, box=(32, 16, 64, 48))
    detector = SlidingWindowDetector(
        brightness_classifier(16), window_size=(32, 32), step=8, scale=1.5, iou_threshold=0.3
    )
    out = detector(image)
    assert out["boxes"].shape[0] >= 1
    assert iou_matrix(out["boxes"].numpy()[:1], np.array([[32, 16, 64, 48]], np.float32)) > 0.9
    assert out["classes"].numpy()[0] == 0


def test_works_with_the_registered_rcnn_classifier():
    classifier = get_model("rcnn_classifier", backbone="small_cnn", input_size=32)
    detector = SlidingWindowDetector(
        classifier, window_size=(32, 32), step=16, score_threshold=0.0, batch_size=4
    )
    out = detector(square_image())
    assert out["boxes"].shape[1] == 4 and out["scores"].shape[0] == out["boxes"].shape[0] > 0
