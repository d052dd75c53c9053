"""Box-regression targets shared by R-CNN and Fast R-CNN: encode, decode, smooth-L1.

The parameterisation of Girshick et al. (R-CNN, 2014; Fast R-CNN, 2015): a region
``P`` and its ground-truth box ``G`` give ``t_x = (G_x - P_x) / P_w``, ``t_y = (G_y -
P_y) / P_h``, ``t_w = log(G_w / P_w)``, ``t_h = log(G_h / P_h)`` (centres and sizes),
divided by :data:`BOX_VARIANCE` as the Fast R-CNN code normalises its targets (means 0,
standard deviations 0.1, 0.1, 0.2, 0.2), so they are about unit size.

Example:
    >>> import numpy as np
    >>> rois = np.array([[10, 10, 50, 50]], np.float32)
    >>> deltas = encode_box_deltas(rois, [[12, 10, 52, 50]])
    >>> deltas.round(3).tolist(), decode_box_deltas(rois, deltas).numpy().round(1).tolist()
    ([[0.5, 0.0, 0.0, 0.0]], [[12.0, 10.0, 52.0, 50.0]])
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

# Fast R-CNN's target standard deviations: deltas are divided by these.
BOX_VARIANCE = (0.1, 0.1, 0.2, 0.2)


def encode_box_deltas(rois, targets):
    """``(t_x, t_y, t_w, t_h)`` taking xyxy ``rois`` to xyxy ``targets``, over the variances.

    Hand-written because KerasCV keeps its box coder private. Works on NumPy arrays and
    tensors; returns float32 NumPy.
    """
    rois = np.asarray(rois, np.float32)
    targets = np.asarray(targets, np.float32)
    rw, rh = rois[..., 2] - rois[..., 0], rois[..., 3] - rois[..., 1]
    tw, th = targets[..., 2] - targets[..., 0], targets[..., 3] - targets[..., 1]
    rw, rh = np.maximum(rw, 1e-6), np.maximum(rh, 1e-6)
    deltas = np.stack(
        [
            (targets[..., 0] + tw / 2 - rois[..., 0] - rw / 2) / rw,
            (targets[..., 1] + th / 2 - rois[..., 1] - rh / 2) / rh,
            np.log(np.maximum(tw, 1e-6) / rw),
            np.log(np.maximum(th, 1e-6) / rh),
        ],
        axis=-1,
    )
    return (deltas / np.asarray(BOX_VARIANCE, np.float32)).astype(np.float32)


def decode_box_deltas(rois: tf.Tensor, deltas: tf.Tensor) -> tf.Tensor:
    """Inverse of :func:`encode_box_deltas`, in TensorFlow (xyxy in, xyxy out; broadcasts)."""
    rois = tf.cast(rois, tf.float32)
    deltas = tf.cast(deltas, tf.float32) * tf.constant(BOX_VARIANCE)
    rw = rois[..., 2] - rois[..., 0]
    rh = rois[..., 3] - rois[..., 1]
    cx = rois[..., 0] + rw / 2 + deltas[..., 0] * rw
    cy = rois[..., 1] + rh / 2 + deltas[..., 1] * rh
    # Clip the log-scale so a wild prediction cannot overflow exp().
    w = rw * tf.exp(tf.minimum(deltas[..., 2], 4.0))
    h = rh * tf.exp(tf.minimum(deltas[..., 3], 4.0))
    return tf.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=-1)


@keras.saving.register_keras_serializable(package="kdet")
def box_regression_loss(y_true, y_pred):
    """Smooth-L1 on box deltas of positive regions only.

    ``y_true`` is ``(..., 5)``: the 4 target deltas and a 0/1 positive flag; the loss is
    averaged over positives (0 when there are none).
    """
    y_true = tf.cast(y_true, tf.float32)
    y_pred = tf.cast(y_pred, tf.float32)
    positive = y_true[..., 4]
    diff = tf.abs(y_true[..., :4] - y_pred)
    smooth_l1 = tf.reduce_sum(tf.where(diff < 1.0, 0.5 * diff**2, diff - 0.5), axis=-1)
    return tf.reduce_sum(smooth_l1 * positive) / tf.maximum(tf.reduce_sum(positive), 1.0)


@keras.saving.register_keras_serializable(package="kdet")
def per_class_box_loss(y_true, y_pred):
    """:func:`box_regression_loss` of each positive region's own class (R-CNN's per-class
    regressors).

    ``y_true`` is ``(B, 5)``: the 4 target deltas and the region's label (0 background,
    ``c + 1`` class ``c``); ``y_pred`` is ``(B, num_classes, 4)``.

    Example:
        >>> y_pred = np.zeros((2, 2, 4), np.float32); y_pred[0, 1] = 1.0
        >>> float(per_class_box_loss([[1, 1, 1, 1, 2], [5, 5, 5, 5, 0]], y_pred))
        0.0
    """
    y_true = tf.cast(y_true, tf.float32)
    label = tf.cast(y_true[:, 4], tf.int32)
    own = tf.gather(tf.cast(y_pred, tf.float32), tf.maximum(label - 1, 0), batch_dims=1)
    positive = tf.cast(label > 0, tf.float32)[:, None]
    return box_regression_loss(tf.concat([y_true[:, :4], positive], axis=-1), own)
