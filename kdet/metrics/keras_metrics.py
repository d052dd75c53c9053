"""Keras metric for one-box-per-image regressors: mean IoU while training.

Kept out of ``kdet.metrics``' top-level imports so that the NumPy evaluators load
without TensorFlow; import it from here.

Example:
    >>> import numpy as np
    >>> metric = BoxIoU(bounding_box_format="rel_xyxy")
    >>> metric.update_state(np.array([[0, 0, 1, 1.0]]), np.array([[0, 0, 1, 0.5]]))
    >>> float(metric.result())
    0.5
"""

import keras
from keras import ops

from kdet.bounding_box import convert_format


def _corners(boxes, bounding_box_format):
    target = "rel_xyxy" if bounding_box_format.startswith("rel_") else "xyxy"
    if bounding_box_format == target:
        return boxes
    return convert_format(boxes, source=bounding_box_format, target=target)


@keras.saving.register_keras_serializable(package="kdet")
class BoxIoU(keras.metrics.Mean):
    """Mean IoU of each image's true box with its predicted box.

    Args:
        bounding_box_format: KerasCV format of ``y_true`` and ``y_pred`` (``(B, 4)``).
            Relative formats need no image size: IoU is unchanged by per-axis scaling.
        name: metric name.
        dtype: metric dtype.

    Example:
        ``model.compile(loss="mse", metrics=[BoxIoU("rel_xyxy")])``
    """

    def __init__(self, bounding_box_format="rel_xyxy", name="box_iou", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.bounding_box_format = bounding_box_format

    def update_state(self, y_true, y_pred, sample_weight=None):
        """Add the IoU of every row of a batch."""
        true = _corners(ops.cast(y_true, "float32"), self.bounding_box_format)
        pred = _corners(ops.cast(y_pred, "float32"), self.bounding_box_format)
        width = ops.minimum(true[:, 2], pred[:, 2]) - ops.maximum(true[:, 0], pred[:, 0])
        height = ops.minimum(true[:, 3], pred[:, 3]) - ops.maximum(true[:, 1], pred[:, 1])
        intersection = ops.relu(width) * ops.relu(height)

        def area(boxes):
            return ops.relu(boxes[:, 2] - boxes[:, 0]) * ops.relu(boxes[:, 3] - boxes[:, 1])

        union = area(true) + area(pred) - intersection
        iou = ops.where(union > 0, intersection / ops.maximum(union, 1e-12), 0.0)
        return super().update_state(iou, sample_weight=sample_weight)

    def get_config(self):
        return {**super().get_config(), "bounding_box_format": self.bounding_box_format}
