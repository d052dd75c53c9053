import keras
import numpy as np
import pytest

from kdet.losses import GIoULoss, generalized_iou


def _random_boxes(rng, n, size=100.0):
    corners = np.sort(rng.uniform(0, size, (n, 2, 2)), axis=1)  # (box, 1|2, x|y)
    return corners.reshape(n, 4).astype("float32")


@pytest.mark.parametrize("bounding_box_format", ["xyxy", "rel_xyxy", "yxyx", "xywh"])
def test_giou_loss_matches_keras_cv_on_random_boxes(bounding_box_format):
    keras_cv = pytest.importorskip("keras_cv")
    from kdet.bounding_box import convert_format

    rng = np.random.default_rng(0)
    for _ in range(5):
        true, pred = _random_boxes(rng, 16), _random_boxes(rng, 16)
        pred[:3] = true[:3]  # identical
        pred[3] = [0, 0, 1, 1]  # far apart
        true[3] = [90, 90, 99, 99]
        scale = 100.0 if bounding_box_format.startswith("rel_") else 1.0
        true_f = convert_format(true / scale, "xyxy", bounding_box_format.replace("rel_", ""))
        pred_f = convert_format(pred / scale, "xyxy", bounding_box_format.replace("rel_", ""))
        if bounding_box_format.startswith("rel_"):
            true_f, pred_f = true / scale, pred / scale
        expected = keras_cv.losses.GIoULoss(bounding_box_format=bounding_box_format)(true_f, pred_f)
        actual = GIoULoss(bounding_box_format=bounding_box_format)(true_f, pred_f)
        np.testing.assert_allclose(float(actual), float(expected), rtol=1e-5, atol=1e-6)


def test_generalized_iou_values_and_shapes():
    boxes = np.array([[[0, 0, 2, 2], [0, 0, 2, 2], [0, 0, 1, 1]]], "float32")
    others = np.array([[[0, 0, 2, 2], [1, 0, 3, 2], [2, 2, 3, 3]]], "float32")
    giou = keras.ops.convert_to_numpy(generalized_iou(boxes, others))
    assert giou.shape == (1, 3)
    # identical: 1; half overlap: IoU 1/3, enclosure filled; disjoint: 0 - (9 - 2) / 9.
    np.testing.assert_allclose(giou[0], [1.0, 1 / 3, -7 / 9], rtol=1e-5)


def test_giou_loss_serialises_and_stays_float32_under_mixed_precision():
    loss = GIoULoss("rel_xyxy")
    again = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(again, GIoULoss) and again.bounding_box_format == "rel_xyxy"
    true = keras.ops.cast([[0, 0, 0.5, 0.5]], "bfloat16")
    value = loss(true, keras.ops.cast([[0, 0, 0.5, 0.6]], "bfloat16"))
    assert value.dtype == "float32"
