"""Bounding box format names (the KerasCV spelling) and their validation.

Every format stores four numbers on the last axis:

- `"xyxy"`: `[left, top, right, bottom]` in pixels. The format used inside kdet.
- `"rel_xyxy"`: like `"xyxy"`, with x divided by the image width and y by the height.
- `"xywh"`: `[left, top, width, height]` in pixels.
- `"center_xywh"`: `[center_x, center_y, width, height]` in pixels.
- `"yxyx"`: `[top, left, bottom, right]` in pixels.
- `"rel_yxyx"`: like `"yxyx"`, relative to the image height and width.

Names are case-insensitive, as in KerasCV (`"center_xyWH"` is `"center_xywh"`).

Example:

    >>> from kdet.bounding_box import formats
    >>> formats.validate_format("center_xyWH")
    'center_xywh'
    >>> formats.is_relative("rel_yxyx")
    True
"""

XYXY = "xyxy"
REL_XYXY = "rel_xyxy"
XYWH = "xywh"
CENTER_XYWH = "center_xywh"
YXYX = "yxyx"
REL_YXYX = "rel_yxyx"

FORMATS = (XYXY, REL_XYXY, XYWH, CENTER_XYWH, YXYX, REL_YXYX)
RELATIVE_FORMATS = (REL_XYXY, REL_YXYX)


def validate_format(bounding_box_format, argument="bounding_box_format"):
    """Returns the canonical (lower-case) name of a box format, or raises.

    Args:
        bounding_box_format: a format name, case-insensitive.
        argument: the name of the caller's argument, used in the error message.

    Returns:
        The lower-case format name, one of `FORMATS`.

    Raises:
        ValueError: if the name is not one of `FORMATS`.

    Example:

        >>> validate_format("XYXY")
        'xyxy'
    """
    name = bounding_box_format.lower() if isinstance(bounding_box_format, str) else None
    if name not in FORMATS:
        raise ValueError(
            f"Unknown bounding box format. Expected `{argument}` to be one of {FORMATS}. "
            f"Received: {argument}={bounding_box_format!r}"
        )
    return name


def is_relative(bounding_box_format):
    """Tells whether a format holds coordinates relative to the image size.

    Args:
        bounding_box_format: a format name, case-insensitive.

    Returns:
        True for `"rel_xyxy"` and `"rel_yxyx"`, False for the pixel formats.

    Example:

        >>> is_relative("xywh")
        False
    """
    return validate_format(bounding_box_format) in RELATIVE_FORMATS
