import itertools

import keras_cv
import numpy as np
import pytest
import tensorflow as tf

from kdet.bounding_box import FORMATS, convert_format
from tests.bounding_box.helpers import HEIGHT, IMAGE_SHAPE, WIDTH, pad_rows, random_xyxy


def oracle(boxes, source, target):
    return keras_cv.bounding_box.convert_format(
        boxes, source=source, target=target, image_shape=IMAGE_SHAPE
    ).numpy()


@pytest.mark.parametrize("as_tensor", [False, True], ids=["numpy", "tensor"])
@pytest.mark.parametrize(("source", "target"), list(itertools.product(FORMATS, FORMATS)))
def test_agrees_with_keras_cv_batched_and_padded(source, target, as_tensor):
    rng = np.random.default_rng(0)
    boxes = oracle(random_xyxy(rng, (3, 7), spill=0.2), "xyxy", source)
    boxes, padded = pad_rows(rng, boxes)
    given = tf.constant(boxes) if as_tensor else boxes

    result = convert_format(given, source, target, image_shape=(HEIGHT, WIDTH))

    assert isinstance(result, tf.Tensor) if as_tensor else isinstance(result, np.ndarray)
    result = np.asarray(result)
    assert result.shape == boxes.shape and result.dtype == np.float32
    np.testing.assert_allclose(
        result[~padded], oracle(boxes, source, target)[~padded], rtol=1e-5, atol=1e-4
    )
    np.testing.assert_array_equal(result[padded], -1.0)


@pytest.mark.parametrize("target", FORMATS)
def test_unbatched_and_rank_four(target):
    rng = np.random.default_rng(1)
    boxes = random_xyxy(rng, (2, 3, 5))
    expected = oracle(boxes.reshape(6, 5, 4), "xyxy", target).reshape(boxes.shape)

    np.testing.assert_allclose(
        convert_format(boxes, "xyxy", target, image_shape=IMAGE_SHAPE), expected, atol=1e-4
    )
    np.testing.assert_allclose(
        convert_format(boxes[0, 0], "xyxy", target, image_shape=(HEIGHT, WIDTH)),
        expected[0, 0],
        atol=1e-4,
    )


def test_images_give_the_size():
    boxes = np.array([[[8, 12, 32, 24]]], "float32")
    images = np.zeros((1, HEIGHT, WIDTH, 3), "float32")
    expected = [[[8 / WIDTH, 12 / HEIGHT, 32 / WIDTH, 24 / HEIGHT]]]
    np.testing.assert_allclose(convert_format(boxes, "xyxy", "rel_xyxy", images=images), expected)
    np.testing.assert_allclose(
        convert_format(tf.constant(boxes), "xyxy", "rel_xyxy", images=tf.constant(images)),
        expected,
    )


def test_relative_to_relative_needs_no_size():
    boxes = np.array([[0.1, 0.2, 0.3, 0.4], [-1, -1, -1, -1]], "float32")
    np.testing.assert_allclose(
        convert_format(boxes, "rel_xyxy", "rel_yxyx"), [[0.2, 0.1, 0.4, 0.3], [-1, -1, -1, -1]]
    )


def test_dtype_argument_and_integer_input():
    result = convert_format(np.array([[1, 2, 3, 4]]), "xywh", "xyxy", dtype="float64")
    assert result.dtype == np.float64
    np.testing.assert_array_equal(result, [[1, 2, 4, 6]])


def test_works_in_tf_function_with_dynamic_shapes():
    @tf.function(
        input_signature=[tf.TensorSpec([None, None, 4]), tf.TensorSpec([None, None, None, 3])]
    )
    def to_relative(boxes, images):
        return convert_format(boxes, "center_xywh", "rel_yxyx", images=images)

    boxes = np.array([[[32, 24, 16, 8], [-1, -1, -1, -1]]], "float32")
    result = to_relative(boxes, tf.zeros((1, HEIGHT, WIDTH, 3)))
    # center (32, 24), size 16 x 8 -> xyxy (24, 20, 40, 28), then relative and yxyx.
    expected = [[[20 / HEIGHT, 24 / WIDTH, 28 / HEIGHT, 40 / WIDTH], [-1, -1, -1, -1]]]
    np.testing.assert_allclose(result, expected, atol=1e-6)


def test_tensor_image_shape_inside_tf_function():
    @tf.function(input_signature=[tf.TensorSpec([None, 4]), tf.TensorSpec([3], tf.int32)])
    def to_pixels(boxes, image_shape):
        return convert_format(boxes, "rel_xyxy", "xywh", image_shape=image_shape)

    result = to_pixels(tf.constant([[0.25, 0.5, 0.75, 1.0]]), tf.constant([40, 80, 3]))
    np.testing.assert_allclose(result, [[20, 20, 40, 20]])


@pytest.mark.parametrize("argument", ["source", "target"])
def test_unknown_format_is_rejected(argument):
    formats = {"source": "xyxy", "target": "xyxy", argument: "xyz"}
    with pytest.raises(ValueError, match=f"Received: {argument}='xyz'"):
        convert_format(np.zeros((1, 4)), **formats)


def test_relative_without_size_is_rejected():
    with pytest.raises(ValueError, match="image_shape=.*images"):
        convert_format(np.zeros((1, 4)), "rel_xyxy", "xyxy")


def test_both_size_arguments_are_rejected():
    with pytest.raises(ValueError, match="either `image_shape` or `images`"):
        convert_format(
            np.zeros((1, 4)), "rel_xyxy", "xyxy", image_shape=(4, 4), images=np.zeros((4, 4, 3))
        )


def test_wrong_last_axis_is_rejected():
    with pytest.raises(ValueError, match=r"Received: boxes.shape=\(2, 5\)"):
        convert_format(np.zeros((2, 5)), "xyxy", "xywh")
