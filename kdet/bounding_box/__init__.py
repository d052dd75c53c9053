"""Bounding box utilities: formats, conversion, IoU, class-wise NMS, clipping.

Format names and semantics are KerasCV's (`keras_cv.bounding_box`); padding rows
(all four values -1, the KerasCV dense convention) are kept as padding everywhere.

Example:

    >>> import numpy as np
    >>> from kdet import bounding_box
    >>> boxes = np.array([[10, 10, 20, 40]], "float32")
    >>> bounding_box.convert_format(boxes, source="xywh", target="xyxy")
    array([[10., 10., 30., 50.]], dtype=float32)
"""

from kdet.bounding_box.clip import clip_to_image
from kdet.bounding_box.converters import convert_format
from kdet.bounding_box.formats import FORMATS, RELATIVE_FORMATS, is_relative
from kdet.bounding_box.iou import compute_iou
from kdet.bounding_box.nms import non_max_suppression

__all__ = [
    "FORMATS",
    "RELATIVE_FORMATS",
    "clip_to_image",
    "compute_iou",
    "convert_format",
    "is_relative",
    "non_max_suppression",
]
