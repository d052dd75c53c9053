"""`non_max_suppression`: class-wise NMS as a TensorFlow graph op."""

import tensorflow as tf

from kdet.bounding_box.converters import PAD_VALUE, convert_format
from kdet.bounding_box.formats import REL_XYXY, XYXY, is_relative


def _nms_one_image(boxes, corners, scores, classes, iou_threshold, score_threshold, limit):
    """Class-wise NMS of one image; outputs padded with -1 to `limit` rows."""
    valid = tf.logical_and(classes >= 0, scores > score_threshold)
    valid = tf.logical_and(valid, tf.logical_not(tf.reduce_all(corners == PAD_VALUE, axis=-1)))
    candidates = tf.where(valid)[:, 0]
    candidate_corners = tf.gather(corners, candidates)
    # Coordinate-offset trick (as in torchvision's batched_nms): each class is moved to
    # its own region of the plane, so one single-class NMS call never lets a box suppress
    # a box of another class, with no Python loop over classes. The offset uses the rank
    # of the class among those present (not its id) to keep the numbers small.
    _, class_rank = tf.unique(tf.gather(classes, candidates))
    low = tf.reduce_min(candidate_corners)
    span = tf.reduce_max(candidate_corners) - low + 1.0
    offsets = tf.cast(class_rank, corners.dtype)[:, None] * span
    selected = tf.image.non_max_suppression(
        candidate_corners - low + offsets,
        tf.gather(scores, candidates),
        max_output_size=limit,
        iou_threshold=iou_threshold,
    )  # indices into candidates, by decreasing score; TF's IoU is the same for xyxy and yxyx
    selected = tf.gather(candidates, selected)
    count = tf.shape(selected)[0]

    def take(values, tail_shape):
        values = tf.gather(values, selected)
        pad = [[0, limit - count]] + [[0, 0]] * (len(values.shape) - 1)
        values = tf.pad(values, pad, constant_values=tf.cast(PAD_VALUE, values.dtype))
        return tf.reshape(values, [limit] + tail_shape)

    return {
        "boxes": take(boxes, [4]),
        "confidence": take(scores, []),
        "classes": take(classes, []),
        "num_detections": count,
    }


def non_max_suppression(
    boxes,
    scores,
    classes,
    *,
    bounding_box_format,
    iou_threshold=0.5,
    score_threshold=0.0,
    max_detections=100,
):
    """Class-wise non-maximum suppression: a box only suppresses boxes of its own class.

    Graph-friendly (works in `tf.function` and exported serving graphs); it is a
    TensorFlow op (`tf.image.non_max_suppression`), so it needs the TensorFlow backend
    or a `tf.data` pipeline. Batched: `(N, 4)` boxes give one image's detections,
    `(B, N, 4)` boxes give `(B, max_detections, ...)` (one NMS per image via `tf.map_fn`).

    Boxes with `scores <= score_threshold`, a negative class or padding coordinates
    (all -1) are ignored. Outputs follow KerasCV's prediction dict, padded with -1.

    Args:
        boxes: `(N, 4)` or `(B, N, 4)` boxes in `bounding_box_format`.
        scores: `(N,)` or `(B, N)` confidence of each box.
        classes: `(N,)` or `(B, N)` class id of each box (int or float).
        bounding_box_format: one of `kdet.bounding_box.FORMATS`; relative formats need
            no image size.
        iou_threshold: a box is suppressed by a higher-scoring box of the same class
            whose IoU with it is above this value.
        score_threshold: boxes scoring at or below this value are dropped first.
        max_detections: number of output rows per image.

    Returns:
        A dict of tensors sorted by decreasing confidence, padded with -1:
        `"boxes"` `(..., max_detections, 4)` in `bounding_box_format`,
        `"confidence"` `(..., max_detections)`, `"classes"` `(..., max_detections)`
        (dtype of `classes`) and `"num_detections"` `(...)` int32.

    Raises:
        ValueError: for an unknown format or boxes that are not rank 2 or 3.

    Example:

        >>> boxes = [[0, 0, 10, 10], [1, 1, 10, 10], [1, 1, 10, 10]]
        >>> out = non_max_suppression(
        ...     boxes, [0.9, 0.8, 0.7], [0, 0, 1], bounding_box_format="xyxy",
        ...     max_detections=3)
        >>> out["classes"].numpy().tolist(), int(out["num_detections"])
        ([0, 1, -1], 2)
    """
    corners_format = REL_XYXY if is_relative(bounding_box_format) else XYXY
    corners = tf.convert_to_tensor(convert_format(boxes, bounding_box_format, corners_format))
    boxes = tf.cast(boxes, corners.dtype)
    scores = tf.cast(scores, boxes.dtype)
    classes = tf.convert_to_tensor(classes)
    rank = boxes.shape.rank
    if rank not in (2, 3):
        raise ValueError(
            f"Expected boxes of shape (N, 4) or (B, N, 4). Received: boxes.shape={boxes.shape}"
        )

    def one_image(args):
        return _nms_one_image(*args, iou_threshold, score_threshold, max_detections)

    if rank == 2:
        return one_image((boxes, corners, scores, classes))
    return tf.map_fn(
        one_image,
        (boxes, corners, scores, classes),
        fn_output_signature={
            "boxes": tf.TensorSpec([max_detections, 4], boxes.dtype),
            "confidence": tf.TensorSpec([max_detections], boxes.dtype),
            "classes": tf.TensorSpec([max_detections], classes.dtype),
            "num_detections": tf.TensorSpec([], tf.int32),
        },
    )
