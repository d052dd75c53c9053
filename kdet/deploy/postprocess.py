"""The steps a deployed graph may leave to its caller, in NumPy (no TensorFlow needed).

A *raw* artifact (exported from a Keras model, see :func:`kdet.deploy.export`) takes one
float32 ``(1, H, W, 3)`` model input and returns ``boxes`` ``(A, 4)`` (``xyxy`` in the model
input's pixels) and ``scores`` ``(A, C)``. The caller then does what the SavedModel's
``detect_image`` does in its graph:

1. :func:`fit_image`: resize the ``uint8`` image to the model input, bilinear with half-pixel
   centres like ``tf.image.resize`` (``letterbox``: aspect ratio kept, centred, zero padded,
   as :func:`kdet.models.yolov8.inputs.fit_to_model`; ``stretch``: as
   :func:`kdet.models.single_box.data.resize_image`);
2. :func:`select`: class = argmax, score = max over classes, then (``nms``) KerasCV's and
   KerasHub's class-agnostic NMS: keep scores ``> confidence_threshold`` and boxes with a
   coordinate ``> 0`` (``non_max_suppression_padded`` takes the others for padding), greedy
   IoU suppression ``> iou_threshold``, at most ``max_detections``;
3. :func:`boxes_to_image`: map boxes back to the image's pixels and clip to it.

Example:
    >>> import numpy as np
    >>> batch, geometry = fit_image(np.zeros((30, 60, 3), np.uint8), (64, 64), "letterbox")
    >>> batch.shape, [round(float(v), 4) for v in geometry]
    ((1, 64, 64, 3), [30.0, 60.0, 1.0667, 1.0667, 16.0, 0.0])
"""

from __future__ import annotations

import cv2
import numpy as np

RESIZE_MODES = ("letterbox", "stretch")


def fit_image(image: np.ndarray, input_size, resize: str):
    """``uint8 (H, W, 3)`` -> (float32 ``(1, h, w, 3)``, geometry for :func:`boxes_to_image`)."""
    if resize not in RESIZE_MODES:
        raise ValueError(f"resize must be one of {RESIZE_MODES}. Received: {resize=}")
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.size == 0:
        raise ValueError(
            f"image must be a non-empty (height, width, 3) array. Received: shape {image.shape}"
        )
    height, width = image.shape[:2]
    target_h, target_w = int(input_size[0]), int(input_size[1])
    f32 = np.float32
    if resize == "letterbox":
        scale = min(f32(target_h) / f32(height), f32(target_w) / f32(width))
        resized_h = float(np.clip(np.round(f32(height) * scale), 1, target_h))
        resized_w = float(np.clip(np.round(f32(width) * scale), 1, target_w))
        offset_y = float(np.floor((target_h - resized_h) / 2.0))
        offset_x = float(np.floor((target_w - resized_w) / 2.0))
    else:
        resized_h, resized_w, offset_y, offset_x = float(target_h), float(target_w), 0.0, 0.0
    pixels = cv2.resize(
        image.astype(np.float32), (int(resized_w), int(resized_h)), interpolation=cv2.INTER_LINEAR
    )
    batch = np.zeros((1, target_h, target_w, 3), np.float32)
    top, left = int(offset_y), int(offset_x)
    batch[0, top : top + int(resized_h), left : left + int(resized_w)] = pixels
    scale_y = f32(resized_h) / f32(height)
    scale_x = f32(resized_w) / f32(width)
    return batch, (height, width, scale_y, scale_x, offset_y, offset_x)


def boxes_to_image(boxes: np.ndarray, geometry) -> np.ndarray:
    """Model-input ``xyxy`` boxes -> the original image's pixels, clipped to it."""
    height, width, scale_y, scale_x, offset_y, offset_x = geometry
    offset = np.array([offset_x, offset_y, offset_x, offset_y], np.float32)
    scale = np.array([scale_x, scale_y, scale_x, scale_y], np.float32)
    boxes = (np.asarray(boxes, np.float32).reshape(-1, 4) - offset) / scale
    return np.clip(boxes, 0.0, np.array([width, height, width, height], np.float32))


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def select(
    boxes: np.ndarray,
    scores: np.ndarray,
    *,
    nms: bool,
    confidence_threshold: float = 0.0,
    iou_threshold: float = 0.5,
    max_detections: int = 100,
):
    """``(A, 4)`` boxes and ``(A, C)`` scores -> kept ``(boxes, scores, classes)``."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    scores = np.asarray(scores, np.float32).reshape(len(boxes), -1)
    classes = np.argmax(scores, axis=-1).astype(np.int32)
    best = np.max(scores, axis=-1)
    if not nms:
        return boxes, best, classes
    order = np.argsort(-best, kind="stable")
    order = order[(best[order] > confidence_threshold) & (boxes[order] > 0).any(axis=-1)]
    keep = []
    while len(order) and len(keep) < max_detections:
        first = order[0]
        keep.append(first)
        rest = order[1:]
        order = rest[_iou(boxes[first], boxes[rest]) <= iou_threshold]
    keep = np.asarray(keep, np.int64)
    return boxes[keep], best[keep], classes[keep]
