"""`compute_iou`: pairwise intersection over union of two sets of boxes."""

from kdet.bounding_box.converters import array_namespace, convert_format, padding_mask
from kdet.bounding_box.formats import REL_XYXY, XYXY, is_relative


def _area(xp, corners):
    width = xp.maximum(corners[..., 2] - corners[..., 0], 0.0)
    height = xp.maximum(corners[..., 3] - corners[..., 1], 0.0)
    return width * height


def compute_iou(boxes1, boxes2, bounding_box_format):
    """Computes the IoU of every box in `boxes1` with every box in `boxes2`.

    Shapes broadcast over leading (batch) axes, as in `keras_cv.bounding_box.compute_iou`:
    `(N, 4)` and `(M, 4)` give `(N, M)`; `(B, N, 4)` and `(B, M, 4)` give `(B, N, M)`;
    `(N, 4)` and `(B, M, 4)` give `(B, N, M)`.

    Padding rows (all four values -1) get an IoU of 0 with everything, so a padded ground
    truth can never pass a matching threshold or win an argmax. (KerasCV's
    `use_masking=True` writes -1 there instead; 0 keeps every value inside [0, 1].)
    Boxes with zero area also give 0.

    Relative boxes need no image size: IoU does not change when x and y are scaled, so
    they are compared in relative coordinates.

    Args:
        boxes1: array or tensor `(..., N, 4)` in `bounding_box_format`.
        boxes2: array or tensor `(..., M, 4)` in `bounding_box_format`.
        bounding_box_format: one of `kdet.bounding_box.FORMATS`.

    Returns:
        IoU values `(..., N, M)` in [0, 1]; NumPy when both inputs are NumPy.

    Raises:
        ValueError: for an unknown format or boxes of rank below 2.

    Example:

        >>> import numpy as np
        >>> a = np.array([[0, 0, 10, 10]], "float32")
        >>> b = np.array([[5, 0, 15, 10], [-1, -1, -1, -1]], "float32")
        >>> compute_iou(a, b, bounding_box_format="xyxy")
        array([[0.33333334, 0.        ]], dtype=float32)
    """
    corners_format = REL_XYXY if is_relative(bounding_box_format) else XYXY
    for name, boxes in (("boxes1", boxes1), ("boxes2", boxes2)):
        if len(boxes.shape) < 2:
            raise ValueError(
                f"Expected `{name}` of shape (..., N, 4). Received: {name}.shape={boxes.shape}"
            )
    boxes1 = convert_format(boxes1, bounding_box_format, corners_format)
    boxes2 = convert_format(boxes2, bounding_box_format, corners_format)
    xp = array_namespace(boxes1, boxes2)

    corners1 = xp.expand_dims(boxes1, axis=-2)  # (..., N, 1, 4)
    corners2 = xp.expand_dims(boxes2, axis=-3)  # (..., 1, M, 4)
    top_left = xp.maximum(corners1[..., :2], corners2[..., :2])
    bottom_right = xp.minimum(corners1[..., 2:], corners2[..., 2:])
    overlap = xp.maximum(bottom_right - top_left, 0.0)
    intersection = overlap[..., 0] * overlap[..., 1]
    union = (
        xp.expand_dims(_area(xp, boxes1), axis=-1)
        + xp.expand_dims(_area(xp, boxes2), axis=-2)
        - intersection
    )
    positive = union > 0.0
    iou = xp.where(positive, intersection / xp.where(positive, union, 1.0), 0.0)
    valid1 = xp.logical_not(padding_mask(xp, boxes1))  # (..., N, 1)
    valid2 = xp.expand_dims(xp.logical_not(padding_mask(xp, boxes2))[..., 0], axis=-2)
    return xp.where(xp.logical_and(valid1, valid2), iou, 0.0)
