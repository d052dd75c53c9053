"""SavedModels with a serving contract that plain TensorFlow can call.

Every exported detector has two signatures, both for one image:

* ``serving_default(image_bytes)``: a scalar ``tf.string`` of JPEG/PNG/BMP/GIF bytes;
* ``detect_image(image)``: a ``uint8`` tensor ``(height, width, 3)`` of any size;

and both return ``boxes`` (float32 ``(N, 4)``, ``xyxy`` in that image's pixels),
``scores`` (float32 ``(N,)``), ``classes`` (int32 ``(N,)``), ``class_names`` (string
``(N,)``) and ``num_detections`` (int32). The class names travel inside the model. Loading
needs TensorFlow only:

Example:
    >>> import tensorflow as tf
    >>> served = tf.saved_model.load("data/models/raccoon_rcnn/saved_model")  # doctest: +SKIP
    >>> out = served.signatures["serving_default"](image_bytes=tf.io.read_file("a.jpg"))
    >>> out["boxes"], out["class_names"]  # doctest: +SKIP
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import tensorflow as tf

OUTPUT_KEYS = ("boxes", "scores", "classes", "class_names", "num_detections")
# Largest image a request may declare: Pillow's decompression-bomb limit, which
# kdet.datasets applies to fetched images too. 89.5 M pixels decode to ~270 MB.
MAX_PIXELS = 89_478_485
_EXPECTED = "expected the bytes of one JPEG, PNG, GIF or BMP file"


def _unsigned(data: tf.Tensor, start: int, length: int, little_endian: bool) -> tf.Tensor:
    """The unsigned integer stored in ``data[start:start + length]`` (zero-padded), int64."""
    raw = tf.io.decode_raw(tf.strings.substr(data, start, length), tf.uint8)
    raw = tf.cast(tf.pad(raw, [[0, length - tf.shape(raw)[0]]]), tf.int64)
    weights = [256**i for i in range(length)]
    weights = tf.constant(weights if little_endian else weights[::-1], tf.int64)
    return tf.reduce_sum(raw * weights)


def declared_size(image_bytes: tf.Tensor) -> tf.Tensor:
    """``[height, width]`` (int64) that encoded image bytes declare, read from the header.

    Nothing is decoded, so a decompression bomb is caught before it allocates memory.
    TensorFlow reads only JPEG headers (``tf.image.extract_jpeg_shape``); the PNG, GIF
    and BMP headers are read here from their fixed positions. Unknown formats give
    ``[0, 0]``.

    Example:
        >>> declared_size(tf.io.encode_png(tf.zeros((4, 6, 3), tf.uint8))).numpy().tolist()
        [4, 6]
    """

    def head(start, length):
        return tf.strings.substr(image_bytes, start, length)

    def jpeg():
        return tf.cast(tf.image.extract_jpeg_shape(image_bytes)[:2], tf.int64)

    def png():  # IHDR: width, height as big-endian uint32 at bytes 16 and 20
        return tf.stack(
            [_unsigned(image_bytes, 20, 4, False), _unsigned(image_bytes, 16, 4, False)]
        )

    def gif():  # logical screen: width, height as little-endian uint16 at bytes 6 and 8
        return tf.stack([_unsigned(image_bytes, 8, 2, True), _unsigned(image_bytes, 6, 2, True)])

    def bmp():  # DIB header: width, height as little-endian int32 at 18 and 22 (height < 0:
        # rows stored top-down)
        def signed(start):
            value = _unsigned(image_bytes, start, 4, True)
            return tf.abs(tf.where(value >= 2**31, value - 2**32, value))

        return tf.stack([signed(22), signed(18)])

    return tf.case(
        [
            (tf.equal(head(0, 3), b"\xff\xd8\xff"), jpeg),
            (tf.equal(head(0, 8), b"\x89PNG\r\n\x1a\n"), png),
            (tf.logical_or(tf.equal(head(0, 6), b"GIF87a"), tf.equal(head(0, 6), b"GIF89a")), gif),
            (tf.equal(head(0, 2), b"BM"), bmp),
        ],
        default=lambda: tf.zeros([2], tf.int64),
        exclusive=True,
    )


def decode_image_bytes(image_bytes: tf.Tensor, max_pixels: int = MAX_PIXELS) -> tf.Tensor:
    """Decode encoded image bytes to ``uint8 (H, W, 3)`` in a graph, with clear errors.

    Empty bytes, bytes of another format, images declaring more than ``max_pixels``
    pixels and images of zero size are rejected before decoding with an
    ``InvalidArgumentError`` saying what was expected. Grayscale, alpha, 16-bit and CMYK
    images are converted to 8-bit RGB; of an animated GIF the first frame is used.
    """
    size = declared_size(image_bytes)
    pixels = size[0] * size[1]
    checks = [
        tf.debugging.assert_greater(
            tf.strings.length(image_bytes), 0, message=f"image_bytes is empty: {_EXPECTED}"
        ),
        tf.debugging.Assert(
            tf.reduce_all(size > 0),
            [f"image_bytes is not a JPEG, PNG, GIF or BMP image with a size: {_EXPECTED}"],
        ),
        tf.debugging.Assert(
            pixels <= max_pixels,
            [f"image is too large: more than {max_pixels} pixels declared, height x width =", size],
        ),
    ]
    with tf.control_dependencies(checks):
        image_bytes = tf.identity(image_bytes)
    image = tf.io.decode_image(image_bytes, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


class DetectorServingModule(tf.Module):
    """Wraps a per-image detection function into the serving contract.

    Args:
        detect_fn: ``uint8 (H, W, 3) -> {"boxes": (N, 4) xyxy pixels, "scores": (N,),
            "classes": (N,) int}``, written with TensorFlow ops (it is traced).
        class_names: names indexed by class id.
        trackable: the Keras model(s) ``detect_fn`` uses, so their variables are saved.
    """

    def __init__(self, detect_fn: Callable, class_names: Sequence[str], trackable=None):
        super().__init__(name="kdet_detector")
        self._detect_fn = detect_fn
        self.trackable = trackable
        self.class_name_table = tf.constant(list(class_names), dtype=tf.string)

    def _serve(self, image: tf.Tensor) -> dict[str, tf.Tensor]:
        tf.debugging.assert_positive(
            tf.size(image), message="image is empty: expected a (height, width, 3) uint8 image"
        )
        result = self._detect_fn(image)
        classes = tf.cast(result["classes"], tf.int32)
        return {
            "boxes": tf.cast(result["boxes"], tf.float32),
            "scores": tf.cast(result["scores"], tf.float32),
            "classes": classes,
            "class_names": tf.gather(self.class_name_table, classes),
            "num_detections": tf.shape(classes)[0],
        }

    @tf.function(input_signature=[tf.TensorSpec([], tf.string, name="image_bytes")])
    def serve_bytes(self, image_bytes):
        """Detections for one encoded image."""
        # A loaded signature checks the dtype of its inputs but not their shape.
        image_bytes = tf.ensure_shape(image_bytes, [])
        return self._serve(decode_image_bytes(image_bytes))

    @tf.function(input_signature=[tf.TensorSpec([None, None, 3], tf.uint8, name="image")])
    def serve_image(self, image):
        """Detections for one uint8 image."""
        return self._serve(tf.ensure_shape(image, [None, None, 3]))


def export_detector(
    path: str | os.PathLike,
    detect_fn: Callable,
    class_names: Sequence[str],
    trackable=None,
) -> str:
    """Save ``detect_fn`` as a SavedModel with the serving contract; returns the path.

    The model is written to a hidden ``.NAME.*.partial`` folder beside ``path`` and renamed
    into place when complete (replacing an older export), so an interrupted export never
    leaves a half-written SavedModel under ``path``.
    """
    module = DetectorServingModule(detect_fn, class_names, trackable)
    signatures = {"serving_default": module.serve_bytes, "detect_image": module.serve_image}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        tf.saved_model.save(module, staging, signatures=signatures)
        if path.exists():
            shutil.rmtree(path)
        os.replace(staging, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return str(path)
