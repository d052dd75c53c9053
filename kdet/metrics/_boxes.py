"""Box helpers shared by the metrics: corner conversion and IoU in float64 NumPy.

IoU is unchanged when both boxes are scaled by the same factor along each axis, so
relative formats are compared in ``rel_xyxy`` and absolute ones in ``xyxy``: no image
size is needed. The IoU itself is hand-written in NumPy (not
``keras_cv.bounding_box.compute_iou``) so that it runs in float64 without a TensorFlow
dispatch per image, which is what lets the evaluator match pycocotools to 1e-6.

Example:
    >>> to_corners([[0, 0, 2, 2]], "xywh").tolist()
    [[0.0, 0.0, 2.0, 2.0]]
"""

import numpy as np


def to_corners(boxes, bounding_box_format):
    """Boxes as float64 ``(N, 4)`` corners: ``xyxy``, or ``rel_xyxy`` for ``rel_*`` input.

    Args:
        boxes: array-like ``(N, 4)``.
        bounding_box_format: a KerasCV format name (``xyxy``, ``rel_xyxy``, ``xywh``,
            ``center_xywh``, ``yxyx``, ``rel_yxyx``, ...).

    Returns:
        ``np.ndarray`` of shape ``(N, 4)``, dtype float64.
    """
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.ndim != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"Expected boxes of shape (N, 4). Received: shape={boxes.shape}")
    target = "rel_xyxy" if bounding_box_format.startswith("rel_") else "xyxy"
    if bounding_box_format == target:
        return boxes
    # Imported here so that xyxy users of kdet.metrics do not pay for Keras; NumPy in,
    # NumPy out (no tensor round trip).
    from kdet.bounding_box import convert_format

    converted = convert_format(boxes, source=bounding_box_format, target=target, dtype="float64")
    return np.asarray(converted, dtype=np.float64)


def _area(boxes):
    return np.clip(boxes[..., 2] - boxes[..., 0], 0, None) * np.clip(
        boxes[..., 3] - boxes[..., 1], 0, None
    )


def _iou(a, b):
    """IoU of broadcastable corner arrays ``a`` and ``b`` (last axis 4)."""
    width = np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0])
    height = np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1])
    intersection = np.clip(width, 0, None) * np.clip(height, 0, None)
    union = _area(a) + _area(b) - intersection
    return np.divide(intersection, union, out=np.zeros_like(intersection), where=union > 0)


def paired_iou(boxes_a, boxes_b):
    """IoU of ``boxes_a[i]`` with ``boxes_b[i]`` for corner boxes ``(N, 4)``; returns ``(N,)``."""
    return _iou(boxes_a, boxes_b)


def pairwise_iou(boxes_a, boxes_b):
    """IoU matrix ``(N, M)`` of corner boxes ``(N, 4)`` against ``(M, 4)``."""
    return _iou(boxes_a[:, None, :], boxes_b[None, :, :])
