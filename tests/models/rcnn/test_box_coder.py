import numpy as np
import tensorflow as tf

from kdet.models.rcnn.box_coder import (
    box_regression_loss,
    decode_box_deltas,
    encode_box_deltas,
    per_class_box_loss,
)


def test_box_coder_round_trip():
    rng = np.random.default_rng(0)
    rois = np.sort(rng.uniform(0, 100, (20, 2, 2)), axis=1).transpose(0, 2, 1).reshape(20, 4)
    rois = rois[:, [0, 2, 1, 3]] + [0, 0, 1, 1]
    targets = rois + rng.uniform(-3, 3, (20, 4))
    deltas = encode_box_deltas(rois, targets)
    np.testing.assert_allclose(decode_box_deltas(rois, deltas).numpy(), targets, atol=1e-3)
    np.testing.assert_allclose(encode_box_deltas(rois, rois), 0.0, atol=1e-4)


def test_paper_targets_normalised_like_fast_rcnn():
    # t_x = (G_x - P_x) / P_w = 0.1, t_w = log(G_w / P_w) = log(1.5); over (0.1, 0.1, 0.2, 0.2).
    deltas = encode_box_deltas([[0, 0, 100, 50]], [[-15, 0, 135, 50]])
    np.testing.assert_allclose(deltas, [[1.0, 0.0, np.log(1.5) / 0.2, 0.0]], atol=1e-5)


def test_per_class_decode_broadcasts_over_classes():
    rois = np.array([[10, 10, 50, 50], [0, 0, 20, 40]], np.float32)
    targets = np.stack([rois + 2, rois - [1, 1, 3, 3]], axis=1)  # (N, C=2, 4)
    deltas = encode_box_deltas(rois[:, None], targets)
    assert deltas.shape == (2, 2, 4)
    np.testing.assert_allclose(decode_box_deltas(rois[:, None], deltas).numpy(), targets, atol=1e-3)


def test_box_loss_counts_positives_only():
    y_true = tf.constant([[[1.0, 0, 0, 0, 1], [5.0, 5, 5, 5, 0]]])
    y_pred = tf.zeros((1, 2, 4))
    assert float(box_regression_loss(y_true, y_pred)) == 0.5


def test_per_class_loss_uses_each_positive_own_class():
    y_pred = np.zeros((3, 2, 4), np.float32)
    y_pred[0, 1] = 1.0  # right class of region 0 (label 2 = class 1)
    y_pred[1, 1] = 1.0  # wrong class of region 1 (label 1 = class 0): not looked at
    y_true = np.array([[1, 1, 1, 1, 2], [0, 0, 0, 0, 1], [9, 9, 9, 9, 0]], np.float32)
    assert float(per_class_box_loss(y_true, y_pred)) == 0.0
    y_true[1, :4] = 1.0  # region 1's class-0 prediction (0) is now 1 off in each delta
    assert float(per_class_box_loss(y_true, y_pred)) == 1.0  # (0 + 4 * 0.5) / 2 positives
