import keras_cv
import numpy as np
import pytest
import tensorflow as tf

from kdet.bounding_box import FORMATS, compute_iou, convert_format
from tests.bounding_box.helpers import IMAGE_SHAPE, pad_rows, random_xyxy


def in_format(boxes, bounding_box_format):
    return convert_format(boxes, "xyxy", bounding_box_format, image_shape=IMAGE_SHAPE)


@pytest.mark.parametrize("as_tensor", [False, True], ids=["numpy", "tensor"])
@pytest.mark.parametrize("bounding_box_format", FORMATS)
def test_agrees_with_keras_cv_batched_and_padded(bounding_box_format, as_tensor):
    rng = np.random.default_rng(2)
    boxes1, padded1 = pad_rows(rng, in_format(random_xyxy(rng, (3, 6)), bounding_box_format))
    boxes2, padded2 = pad_rows(rng, in_format(random_xyxy(rng, (3, 9)), bounding_box_format))
    expected = keras_cv.bounding_box.compute_iou(
        boxes1, boxes2, bounding_box_format, image_shape=IMAGE_SHAPE
    ).numpy()
    convert = tf.constant if as_tensor else np.asarray

    result = compute_iou(convert(boxes1), convert(boxes2), bounding_box_format)

    assert isinstance(result, tf.Tensor) if as_tensor else isinstance(result, np.ndarray)
    result = np.asarray(result)
    assert result.shape == (3, 6, 9)
    valid = ~padded1[:, :, None] & ~padded2[:, None, :]
    assert valid.any() and (~valid).any()
    assert (expected[valid] > 0.01).any()  # the random boxes do overlap
    np.testing.assert_allclose(result[valid], expected[valid], atol=1e-5)
    np.testing.assert_array_equal(result[~valid], 0.0)


@pytest.mark.parametrize(("shape1", "shape2"), [((4,), (5,)), ((4,), (2, 5)), ((2, 4), (5,))])
def test_unbatched_and_mixed_ranks_match_keras_cv(shape1, shape2):
    rng = np.random.default_rng(3)
    boxes1, boxes2 = random_xyxy(rng, shape1), random_xyxy(rng, shape2)
    expected = keras_cv.bounding_box.compute_iou(boxes1, boxes2, "xyxy").numpy()
    np.testing.assert_allclose(compute_iou(boxes1, boxes2, "xyxy"), expected, atol=1e-5)


def test_hand_made_values():
    boxes1 = np.array([[0, 0, 10, 10], [0, 0, 0, 10]], "float32")  # second has no area
    boxes2 = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]], "float32")
    np.testing.assert_allclose(
        compute_iou(boxes1, boxes2, "xyxy"), [[1.0, 50 / 150, 0.0], [0.0, 0.0, 0.0]]
    )


def test_works_in_tf_function():
    @tf.function(input_signature=[tf.TensorSpec([None, None, 4])] * 2)
    def iou(boxes1, boxes2):
        return compute_iou(boxes1, boxes2, "center_xywh")

    result = iou(tf.constant([[[5.0, 5.0, 10.0, 10.0]]]), tf.constant([[[10.0, 5.0, 10.0, 10.0]]]))
    np.testing.assert_allclose(result, [[[50 / 150]]], rtol=1e-6)


def test_unknown_format_and_bad_rank_are_rejected():
    with pytest.raises(ValueError, match="Received: bounding_box_format='xyhw'"):
        compute_iou(np.zeros((1, 4)), np.zeros((1, 4)), "xyhw")
    with pytest.raises(ValueError, match=r"Received: boxes1.shape=\(4,\)"):
        compute_iou(np.zeros(4), np.zeros((1, 4)), "xyxy")
