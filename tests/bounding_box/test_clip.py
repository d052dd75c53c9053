import keras_cv
import numpy as np
import pytest
import tensorflow as tf

from kdet.bounding_box import FORMATS, clip_to_image, convert_format
from tests.bounding_box.helpers import HEIGHT, IMAGE_SHAPE, WIDTH, pad_rows, random_xyxy


@pytest.mark.parametrize("as_tensor", [False, True], ids=["numpy", "tensor"])
@pytest.mark.parametrize("bounding_box_format", FORMATS)
def test_agrees_with_keras_cv(bounding_box_format, as_tensor):
    rng = np.random.default_rng(4)
    xyxy = random_xyxy(rng, (3, 8), spill=0.5)
    xyxy[0, 0] = [WIDTH + 1, 5, WIDTH + 9, 9]  # fully outside: must be dropped
    boxes = convert_format(xyxy, "xyxy", bounding_box_format, image_shape=IMAGE_SHAPE)
    boxes, padded = pad_rows(rng, boxes)
    classes = rng.integers(0, 5, (3, 8)).astype("float32")
    classes[padded] = -1
    expected = keras_cv.bounding_box.clip_to_image(
        {"boxes": boxes, "classes": classes}, bounding_box_format, image_shape=IMAGE_SHAPE
    )
    convert = tf.constant if as_tensor else np.asarray

    result = clip_to_image(
        {"boxes": convert(boxes), "classes": convert(classes)},
        bounding_box_format,
        image_shape=(HEIGHT, WIDTH),
    )
    boxes_only = clip_to_image(convert(boxes), bounding_box_format, image_shape=(HEIGHT, WIDTH))

    assert isinstance(boxes_only, tf.Tensor) if as_tensor else isinstance(boxes_only, np.ndarray)
    np.testing.assert_allclose(result["boxes"], expected["boxes"], atol=1e-4)
    np.testing.assert_array_equal(result["classes"], expected["classes"])
    np.testing.assert_array_equal(result["boxes"], boxes_only)
    assert result["classes"][0, 0] == -1
    assert (np.asarray(result["classes"]) >= 0).any()


def test_hand_made_values_and_relative_needs_no_size():
    boxes = np.array([[-5, 10, 30, 90], [70, 70, 90, 90], [-1, -1, -1, -1]], "float32")
    np.testing.assert_array_equal(
        clip_to_image(boxes, "xyxy", image_shape=(64, 64)),
        [[0, 10, 30, 64], [-1, -1, -1, -1], [-1, -1, -1, -1]],
    )
    relative = np.array([[-0.5, 0.25, 0.5, 1.5]], "float32")
    np.testing.assert_array_equal(clip_to_image(relative, "rel_xyxy"), [[0, 0.25, 0.5, 1]])


def test_works_in_tf_function():
    @tf.function(input_signature=[tf.TensorSpec([None, 4]), tf.TensorSpec([2], tf.int32)])
    def clip(boxes, image_shape):
        return clip_to_image(boxes, "xywh", image_shape=image_shape)

    np.testing.assert_array_equal(
        clip(tf.constant([[-2.0, 4.0, 10.0, 100.0]]), tf.constant([20, 30])), [[0, 4, 8, 16]]
    )


def test_errors():
    with pytest.raises(ValueError, match="Received: bounding_box_format='XYZ'"):
        clip_to_image(np.zeros((1, 4)), "XYZ", image_shape=(4, 4))
    with pytest.raises(ValueError, match="needs the image size"):
        clip_to_image(np.zeros((1, 4)), "xyxy")
