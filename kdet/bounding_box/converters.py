"""`convert_format`: box format conversion for NumPy arrays and tensors, via `xyxy`.

Hand-written rather than a wrapper around `keras_cv.bounding_box.convert_format`, which
(0.9.0) returns tensors for NumPy input, accepts only rank 2 or 3, needs a 3-element
`image_shape` and turns -1 padding rows into other numbers. The formulas are KerasCV's
and the tests check agreement with it for every pair of formats.
"""

import keras
import numpy as np

from kdet.bounding_box.formats import REL_XYXY, XYXY, is_relative, validate_format

PAD_VALUE = -1.0


def _is_numpy_like(value):
    if isinstance(value, (list, tuple)):
        return all(_is_numpy_like(item) for item in value)
    return isinstance(value, (np.ndarray, np.generic, int, float))


def array_namespace(*values):
    """Returns `numpy` when every given value is NumPy/Python data, else `keras.ops`.

    NumPy input stays NumPy (no tensor round trip, usable in `tf.data` `numpy_function`s
    and plain scripts); anything else goes through `keras.ops` so it works in graphs and
    on any Keras backend. `None` values are ignored.
    """
    given = [value for value in values if value is not None]
    return np if all(_is_numpy_like(value) for value in given) else keras.ops


def cast(xp, value, dtype):
    """Casts `value` to `dtype` with the namespace returned by `array_namespace`."""
    return np.asarray(value, dtype=dtype) if xp is np else keras.ops.cast(value, dtype)


def padding_mask(xp, boxes):
    """True (shape `(..., 1)`) where a row is padding: all four values equal -1."""
    return xp.all(boxes == PAD_VALUE, axis=-1, keepdims=True)


def _image_size(xp, image_shape, images, dtype):
    if image_shape is not None and images is not None:
        raise ValueError(
            "Pass either `image_shape` or `images`, not both. "
            f"Received: image_shape={image_shape}, images.shape={images.shape}"
        )
    if image_shape is not None:
        height, width = image_shape[0], image_shape[1]
    else:
        shape = images.shape if _is_numpy_like(images) else keras.ops.shape(images)
        if len(shape) < 3:
            raise ValueError(
                "`images` must have shape (height, width, channels) or "
                f"(batch, height, width, channels). Received: images.shape={shape}"
            )
        height, width = shape[-3], shape[-2]
    return cast(xp, height, dtype), cast(xp, width, dtype)


def _to_xyxy(xp, boxes, source, height, width):
    a, b, c, d = (boxes[..., i : i + 1] for i in range(4))
    if source == XYXY:
        return boxes
    if source == "xywh":
        parts = [a, b, a + c, b + d]
    elif source == "center_xywh":
        parts = [a - c / 2.0, b - d / 2.0, a + c / 2.0, b + d / 2.0]
    elif source == "yxyx":
        parts = [b, a, d, c]
    elif source == REL_XYXY:
        parts = [a * width, b * height, c * width, d * height]
    else:  # rel_yxyx
        parts = [b * width, a * height, d * width, c * height]
    return xp.concatenate(parts, axis=-1)


def _from_xyxy(xp, boxes, target, height, width):
    x1, y1, x2, y2 = (boxes[..., i : i + 1] for i in range(4))
    if target == XYXY:
        return boxes
    if target == "xywh":
        parts = [x1, y1, x2 - x1, y2 - y1]
    elif target == "center_xywh":
        parts = [(x1 + x2) / 2.0, (y1 + y2) / 2.0, x2 - x1, y2 - y1]
    elif target == "yxyx":
        parts = [y1, x1, y2, x2]
    elif target == REL_XYXY:
        parts = [x1 / width, y1 / height, x2 / width, y2 / height]
    else:  # rel_yxyx
        parts = [y1 / height, x1 / width, y2 / height, x2 / width]
    return xp.concatenate(parts, axis=-1)


def convert_format(boxes, source, target, image_shape=None, images=None, dtype="float32"):
    """Converts boxes from one format to another, passing through `xyxy`.

    Works on NumPy arrays (returns NumPy) and tensors (returns tensors; graph-safe, so
    usable inside `tf.function` and exported serving graphs) of any rank `(..., 4)`:
    `(N, 4)`, `(B, N, 4)`, ... Rows that are padding (all four values -1, the KerasCV
    dense convention) stay -1 in the output.

    Relative formats (`rel_xyxy`, `rel_yxyx`) need the image size when converting to or
    from a pixel format; one size applies to every box. Between two relative formats no
    size is needed.

    Args:
        boxes: array or tensor of shape `(..., 4)` in the `source` format.
        source: the format of `boxes`, one of `kdet.bounding_box.FORMATS`.
        target: the format to return, one of `kdet.bounding_box.FORMATS`.
        image_shape: `(height, width)` or `(height, width, channels)`: a tuple, array or
            tensor. Needed for relative formats unless `images` is given.
        images: images the boxes belong to, `(H, W, C)` or `(B, H, W, C)`; only their
            height and width are used. Alternative to `image_shape`.
        dtype: dtype of the returned boxes.

    Returns:
        The boxes in the `target` format, same shape, NumPy for NumPy input.

    Raises:
        ValueError: for an unknown format, a last axis that is not 4, or a relative
            conversion without `image_shape`/`images`.

    Example:

        >>> import numpy as np
        >>> boxes = np.array([[10, 20, 50, 60], [-1, -1, -1, -1]], "float32")
        >>> convert_format(boxes, source="xyxy", target="center_xywh")
        array([[30., 40., 40., 40.],
               [-1., -1., -1., -1.]], dtype=float32)
    """
    source = validate_format(source, argument="source")
    target = validate_format(target, argument="target")
    xp = array_namespace(boxes, image_shape, images)
    boxes = cast(xp, boxes, dtype)
    if boxes.shape[-1] is not None and boxes.shape[-1] != 4:
        raise ValueError(
            f"Expected boxes with a last axis of size 4. Received: boxes.shape={boxes.shape}"
        )
    if source == target:
        return boxes
    if is_relative(source) and is_relative(target):
        # rel -> rel is a pure reordering; the image size cancels out.
        source, target = source[len("rel_") :], target[len("rel_") :]
    height = width = None
    if is_relative(source) or is_relative(target):
        if image_shape is None and images is None:
            raise ValueError(
                f"Converting between `{source}` and `{target}` needs the image size: pass "
                "`image_shape=(height, width)` or `images`. "
                f"Received: image_shape={image_shape}, images={images}"
            )
        height, width = _image_size(xp, image_shape, images, dtype)
    converted = _from_xyxy(xp, _to_xyxy(xp, boxes, source, height, width), target, height, width)
    return xp.where(padding_mask(xp, boxes), cast(xp, PAD_VALUE, dtype), converted)
