"""Checks shared by the dataset sources: image sizes and the policy for invalid boxes.

A malformed or hostile file always stops a fetch with an error naming it. A well-formed
annotation whose *content* is wrong (a box that is empty, inverted or far outside its
image, an unknown class name) follows ``on_invalid``: ``"skip"`` drops the whole image
with a logged warning (dropping only the bad box would leave an unlabelled object that a
detector would learn as background), ``"raise"`` stops with an
:class:`~kdet.errors.AnnotationError`.

Example:
    >>> check_boxes([[0, 0, 65, 10]], 64, 48, "a.xml", on_invalid="raise")
    [[0.0, 0.0, 64.0, 10.0]]
"""

from __future__ import annotations

import logging
import os
import warnings

from PIL import Image, UnidentifiedImageError

from kdet.datasets.records import validate_boxes
from kdet.errors import AnnotationError, ImageError

logger = logging.getLogger(__name__)

ON_INVALID_CHOICES = ("skip", "raise")


def check_on_invalid(on_invalid: str) -> None:
    """Raise ``ValueError`` unless ``on_invalid`` is ``"skip"`` or ``"raise"``."""
    if on_invalid not in ON_INVALID_CHOICES:
        raise ValueError(
            f"on_invalid must be one of {ON_INVALID_CHOICES}. Received: on_invalid={on_invalid!r}"
        )


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(width, height)`` of an image file, read from its header.

    The size is the stored pixel grid (what ``tf.io.decode_image`` returns), not the
    EXIF-rotated view. A file that is not an image, or declares a decompression-bomb
    size, raises :class:`~kdet.errors.ImageError` naming it.

    Example:
        >>> image_size("raccoon-1.jpg")  # doctest: +SKIP
        (650, 417)
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
    except FileNotFoundError:
        raise ImageError(path, "image file is missing") from None
    except (UnidentifiedImageError, Image.DecompressionBombWarning) as err:
        raise ImageError(path, f"not a decodable image ({err})") from None
    except Image.DecompressionBombError as err:
        raise ImageError(path, f"image too large ({err})") from None
    except OSError as err:
        raise ImageError(path, f"cannot read image ({err})") from None
    if width < 1 or height < 1:
        raise ImageError(path, f"image has an empty size {width}x{height}")
    return width, height


def check_boxes(
    boxes, width: int, height: int, source: str | os.PathLike, on_invalid: str
) -> list[list[float]] | None:
    """Validate absolute ``xyxy`` boxes; ``None`` (image skipped) on failure when skipping.

    Args:
        boxes: ``[[x1, y1, x2, y2], ...]`` in pixels.
        width: image width.
        height: image height.
        source: the annotation file, named in the warning or error.
        on_invalid: ``"skip"`` (log a warning, return ``None``) or ``"raise"``.

    Returns:
        The boxes clipped to the image (see
        :func:`~kdet.datasets.records.validate_boxes`), or ``None``.

    Example:
        >>> check_boxes([[5, 5, 5, 9]], 64, 48, "a.xml", on_invalid="skip") is None
        True
    """
    try:
        return validate_boxes(boxes, width, height, source)
    except AnnotationError as err:
        return skip_or_raise(err, on_invalid)


def skip_or_raise(error: AnnotationError, on_invalid: str) -> None:
    """Raise ``error`` when ``on_invalid == "raise"``, else log it as a skipped image."""
    if on_invalid == "raise":
        raise error
    logger.warning("%s; image skipped", error)
    return None


def log_skipped(dataset: str, skipped: int, total: int) -> None:
    """Log how many images of ``dataset`` were skipped for invalid annotations."""
    if skipped:
        logger.warning(
            "%s: skipped %d of %d images with invalid annotations", dataset, skipped, total
        )
