"""Box losses shared by the families, on top of ``keras.ops``.

Keras 3 core has box utilities (``keras.utils.bounding_boxes``: IoU, CIoU) but no GIoU
loss, so kdet keeps its own: the formula of KerasCV's ``GIoULoss`` (checked against it in
the tests) for boxes paired row by row, in any kdet box format.

Example:
    >>> import numpy as np
    >>> loss = GIoULoss(bounding_box_format="xyxy")
    >>> float(loss(np.array([[0, 0, 2, 2.0]]), np.array([[0, 0, 2, 2.0]])))
    0.0
"""

import keras
from keras import ops

from kdet.bounding_box import convert_format, is_relative


def generalized_iou(boxes1, boxes2, bounding_box_format="xyxy"):
    """GIoU of ``boxes1[..., i, :]`` with ``boxes2[..., i, :]`` (paired, not all pairs).

    Reference: Rezatofighi et al., "Generalized Intersection over Union", CVPR 2019
    (https://arxiv.org/abs/1902.09630). IoU minus the part of the smallest enclosing box
    that the union leaves empty; in ``[-1, 1]``.

    Args:
        boxes1: tensor ``(..., 4)``.
        boxes2: tensor ``(..., 4)``, same shape.
        bounding_box_format: format of both (a relative format needs no image size: GIoU
            is unchanged when x and y are scaled).

    Returns:
        Tensor ``(...)`` of GIoU values.
    """
    corners = "rel_xyxy" if is_relative(bounding_box_format) else "xyxy"
    if bounding_box_format != corners:
        boxes1 = convert_format(boxes1, source=bounding_box_format, target=corners)
        boxes2 = convert_format(boxes2, source=bounding_box_format, target=corners)
    epsilon = keras.backend.epsilon()

    def area(boxes):
        return ops.relu(boxes[..., 2] - boxes[..., 0]) * ops.relu(boxes[..., 3] - boxes[..., 1])

    top_left = ops.maximum(boxes1[..., :2], boxes2[..., :2])
    bottom_right = ops.minimum(boxes1[..., 2:], boxes2[..., 2:])
    overlap = ops.relu(bottom_right - top_left)
    intersection = overlap[..., 0] * overlap[..., 1]
    union = area(boxes1) + area(boxes2) - intersection
    iou = intersection / (union + epsilon)
    enclose_top_left = ops.minimum(boxes1[..., :2], boxes2[..., :2])
    enclose = ops.relu(ops.maximum(boxes1[..., 2:], boxes2[..., 2:]) - enclose_top_left)
    enclose_area = enclose[..., 0] * enclose[..., 1]
    return iou - (enclose_area - union) / (enclose_area + epsilon)


@keras.saving.register_keras_serializable(package="kdet")
class GIoULoss(keras.losses.Loss):
    """``1 - GIoU`` of each true box with its predicted box.

    Same values as KerasCV's ``keras_cv.losses.GIoULoss`` for one box per image
    (``(B, 4)``); for ``(B, N, 4)`` it pairs boxes row by row. Computed in ``float32``.

    Args:
        bounding_box_format: format of ``y_true`` and ``y_pred`` (kdet / KerasCV names).
        name: loss name.
        **kwargs: passed to ``keras.losses.Loss`` (``reduction``, ``dtype``).

    Example:
        ``model.compile(loss={"bounding_box": GIoULoss("rel_xyxy")}, ...)``
    """

    def __init__(self, bounding_box_format="xyxy", name="giou_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.bounding_box_format = bounding_box_format

    def call(self, y_true, y_pred):
        y_pred = ops.cast(y_pred, "float32")
        y_true = ops.cast(y_true, "float32")
        return 1.0 - generalized_iou(y_true, y_pred, self.bounding_box_format)

    def get_config(self):
        return {**super().get_config(), "bounding_box_format": self.bounding_box_format}
