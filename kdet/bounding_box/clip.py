"""`clip_to_image`: clip boxes to the image and drop the ones left with no area."""

from kdet.bounding_box.converters import PAD_VALUE, array_namespace, convert_format
from kdet.bounding_box.formats import REL_XYXY, is_relative, validate_format


def clip_to_image(bounding_boxes, bounding_box_format, image_shape=None, images=None):
    """Clips boxes to the image borders; boxes left without area become -1 padding.

    Same semantics as `keras_cv.bounding_box.clip_to_image`: boxes are clipped to
    [0, 1] in relative coordinates; a box whose clipped width or height is not positive
    (fully outside the image, degenerate, NaN, or already padding) becomes
    `[-1, -1, -1, -1]`, and when a KerasCV dict is given its class becomes -1 too.

    Args:
        bounding_boxes: boxes `(..., 4)` (array or tensor), or a dict with `"boxes"`
            and `"classes"` `(...)` as in a kdet/KerasCV batch.
        bounding_box_format: one of `kdet.bounding_box.FORMATS`.
        image_shape: `(height, width)` or `(height, width, channels)`; needed for pixel
            formats unless `images` is given, ignored for relative formats.
        images: images the boxes belong to, an alternative to `image_shape`.

    Returns:
        Clipped boxes in `bounding_box_format` (NumPy for NumPy input), or a copy of
        the dict with `"boxes"` and `"classes"` replaced.

    Raises:
        ValueError: for an unknown format or a pixel format without an image size.

    Example:

        >>> import numpy as np
        >>> boxes = np.array([[-5, 10, 30, 90], [70, 70, 90, 90]], "float32")
        >>> clip_to_image(boxes, bounding_box_format="xyxy", image_shape=(64, 64))
        array([[ 0., 10., 30., 64.],
               [-1., -1., -1., -1.]], dtype=float32)
    """
    bounding_box_format = validate_format(bounding_box_format)
    is_dict = isinstance(bounding_boxes, dict)
    boxes = bounding_boxes["boxes"] if is_dict else bounding_boxes
    if is_relative(bounding_box_format):
        image_shape = images = None  # relative -> rel_xyxy is a reordering only
    relative = convert_format(boxes, bounding_box_format, REL_XYXY, image_shape, images)
    xp = array_namespace(relative)
    clipped = xp.clip(relative, 0.0, 1.0)
    keep = xp.logical_and(
        clipped[..., 2] - clipped[..., 0] > 0.0, clipped[..., 3] - clipped[..., 1] > 0.0
    )
    clipped = convert_format(clipped, REL_XYXY, bounding_box_format, image_shape, images)
    clipped = xp.where(xp.expand_dims(keep, axis=-1), clipped, PAD_VALUE)
    if not is_dict:
        return clipped
    result = dict(bounding_boxes)
    result["boxes"] = clipped
    result["classes"] = xp.where(keep, bounding_boxes["classes"], -1)
    return result
