"""Metrics for one-box-per-image regressors: per-image IoU, mean IoU, hit rates, baseline.

A model that ignores the image and always predicts the training set's mean box can
score a high mean IoU on datasets whose objects sit in the same place (Caltech-101
airplanes), so :func:`mean_box_baseline` scores that constant prediction the same way
and evaluations report both side by side.

Example:
    >>> m = box_regression_metrics([[0, 0, 10, 10]], [[0, 0, 10, 5]], "xyxy")
    >>> round(m["mean_iou"], 3), m["iou_at_50"], m["iou_at_75"]
    (0.5, 1.0, 0.0)
"""

import numpy as np

from kdet.metrics._boxes import paired_iou, to_corners


def box_iou_per_image(y_true, y_pred, bounding_box_format):
    """IoU of each image's true box with its predicted box.

    Args:
        y_true: true boxes, ``(N, 4)``.
        y_pred: predicted boxes, ``(N, 4)``, in the same format.
        bounding_box_format: KerasCV format name of both arrays. Relative formats need no
            image size: IoU does not change when both boxes are scaled per axis.

    Returns:
        float64 ``(N,)`` IoU per image.

    Example:
        >>> box_iou_per_image([[0, 0, 1, 1]], [[0, 0, 1, 0.5]], "rel_xyxy").tolist()
        [0.5]
    """
    true = to_corners(y_true, bounding_box_format)
    pred = to_corners(y_pred, bounding_box_format)
    if true.shape != pred.shape:
        raise ValueError(
            "y_true and y_pred must hold one box per image each. "
            f"Received: y_true.shape={true.shape}, y_pred.shape={pred.shape}"
        )
    return paired_iou(true, pred)


def box_regression_metrics(y_true, y_pred, bounding_box_format):
    """Mean IoU and the share of images with IoU >= 0.5 and >= 0.75.

    Args:
        y_true: true boxes, ``(N, 4)``.
        y_pred: predicted boxes, ``(N, 4)``, in the same format.
        bounding_box_format: KerasCV format name of both arrays.

    Returns:
        dict with ``mean_iou``, ``iou_at_50``, ``iou_at_75`` (floats) and
        ``per_image_iou`` (float64 ``(N,)``).

    Example:
        >>> box_regression_metrics([[0, 0, 4, 4]], [[0, 0, 4, 4]], "xyxy")["mean_iou"]
        1.0
    """
    iou = box_iou_per_image(y_true, y_pred, bounding_box_format)
    if iou.size == 0:
        raise ValueError("box_regression_metrics needs at least one image. Received: 0 boxes")
    return {
        "mean_iou": float(iou.mean()),
        "iou_at_50": float(np.mean(iou >= 0.5)),
        "iou_at_75": float(np.mean(iou >= 0.75)),
        "per_image_iou": iou,
    }


def _relative_corners(boxes, bounding_box_format, image_sizes, name):
    corners = to_corners(boxes, bounding_box_format)
    if bounding_box_format.startswith("rel_"):
        return corners
    if image_sizes is None:
        raise ValueError(
            f"{name} are in the absolute format {bounding_box_format!r}: pass "
            f"{name.replace('boxes', 'image_sizes')} as (N, 2) (height, width), "
            "or use a rel_* format."
        )
    sizes = np.asarray(image_sizes, dtype=np.float64)
    if sizes.shape != (len(corners), 2) or np.any(sizes <= 0):
        raise ValueError(
            f"Expected positive (height, width) per box, shape ({len(corners)}, 2). "
            f"Received: image_sizes of shape {sizes.shape}"
        )
    height, width = sizes[:, 0], sizes[:, 1]
    return corners / np.stack([width, height, width, height], axis=-1)


def mean_box_baseline(
    train_boxes,
    test_boxes,
    bounding_box_format="rel_xyxy",
    train_image_sizes=None,
    test_image_sizes=None,
):
    """Score "always predict the training set's mean box" on the test set.

    The mean is taken in relative ``xyxy`` coordinates (so images of different sizes
    count alike) and predicted, scaled to each test image, for every test image.

    Args:
        train_boxes: one true box per training image, ``(N, 4)``.
        test_boxes: one true box per test image, ``(M, 4)``.
        bounding_box_format: KerasCV format name of both arrays.
        train_image_sizes: ``(N, 2)`` (height, width); required for absolute formats.
        test_image_sizes: ``(M, 2)`` (height, width); required for absolute formats.

    Returns:
        The dict of :func:`box_regression_metrics` plus ``mean_box`` (the relative
        ``xyxy`` box predicted, float64 ``(4,)``).

    Example:
        >>> m = mean_box_baseline([[0, 0, .5, .5], [.5, .5, 1, 1]], [[.25, .25, .75, .75]])
        >>> m["mean_box"].tolist(), m["mean_iou"]
        ([0.25, 0.25, 0.75, 0.75], 1.0)
    """
    train = _relative_corners(train_boxes, bounding_box_format, train_image_sizes, "train_boxes")
    test = _relative_corners(test_boxes, bounding_box_format, test_image_sizes, "test_boxes")
    if len(train) == 0:
        raise ValueError("mean_box_baseline needs at least one training box. Received: 0")
    mean_box = train.mean(axis=0)
    metrics = box_regression_metrics(test, np.broadcast_to(mean_box, test.shape), "rel_xyxy")
    metrics["mean_box"] = mean_box
    return metrics
