"""Decode encoded images to 3-channel ``uint8`` tensors, naming the file on bad input.

TensorFlow's decoders (``tf.io.decode_image``) run inside the tf.data graph, which keeps
the input pipeline fast, but their errors do not say which file failed. So before
decoding, the first bytes are checked against the signatures of the formats TensorFlow
decodes, and a file that is empty or is no image fails with a message naming it.

Example:
    >>> import tensorflow as tf
    >>> image = decode_image(tf.io.read_file("photo.jpg"), "photo.jpg")  # doctest: +SKIP
    >>> image.dtype, image.shape[-1]  # doctest: +SKIP
    (tf.uint8, 3)
"""

import tensorflow as tf

# Leading bytes of the formats tf.io.decode_image reads (WebP is checked separately:
# "RIFF" + 4 size bytes + "WEBP").
_SIGNATURES = (
    b"\xff\xd8\xff",  # JPEG
    b"\x89PNG\r\n\x1a\n",  # PNG
    b"GIF87a",
    b"GIF89a",
    b"BM",  # BMP
    b"\xff\x0a",  # JPEG XL codestream
    b"\x00\x00\x00\x0cJXL ",  # JPEG XL container
)


def has_image_signature(contents: tf.Tensor) -> tf.Tensor:
    """Whether encoded bytes start like a JPEG, PNG, GIF, BMP, WebP or JPEG XL file.

    Args:
        contents: scalar ``tf.string`` with the file's bytes.

    Returns:
        Scalar ``tf.bool``.

    Example:
        >>> bool(has_image_signature(tf.constant(b"\\x89PNG\\r\\n\\x1a\\n....")))
        True
        >>> bool(has_image_signature(tf.constant(b"<html>")))
        False
    """
    matches = [tf.equal(tf.strings.substr(contents, 0, len(sig)), sig) for sig in _SIGNATURES]
    webp = tf.logical_and(
        tf.equal(tf.strings.substr(contents, 0, 4), b"RIFF"),
        tf.equal(tf.strings.substr(contents, 8, 4), b"WEBP"),
    )
    return tf.reduce_any(tf.stack([*matches, webp]))


def decode_image(contents: tf.Tensor, filename: tf.Tensor | str) -> tf.Tensor:
    """Decode an encoded image to ``uint8 (H, W, 3)``.

    Grayscale images are repeated to RGB, alpha channels are dropped, CMYK JPEGs are
    converted to RGB and only the first frame of an animation is kept.

    Args:
        contents: scalar ``tf.string`` with the file's bytes.
        filename: the file's name, used in the error message.

    Returns:
        ``tf.uint8`` tensor of shape ``(H, W, 3)``.

    Raises:
        tf.errors.InvalidArgumentError: ``"<filename>: empty file"`` or
            ``"<filename>: not a JPEG, PNG, GIF, BMP or WebP image"`` (when run eagerly or
            when the tf.data element is produced).

    Example:
        >>> png = tf.io.encode_png(tf.zeros((4, 6, 1), tf.uint8))
        >>> decode_image(png, "gray.png").shape
        TensorShape([4, 6, 3])
    """
    filename = tf.convert_to_tensor(filename, tf.string)
    checks = [
        tf.debugging.Assert(
            tf.strings.length(contents) > 0, [tf.strings.join([filename, ": empty file"])]
        ),
        tf.debugging.Assert(
            has_image_signature(contents),
            [tf.strings.join([filename, ": not a JPEG, PNG, GIF, BMP or WebP image"])],
        ),
    ]
    with tf.control_dependencies(checks):
        contents = tf.identity(contents)
    image = tf.io.decode_image(contents, channels=3, dtype=tf.uint8, expand_animations=False)
    image.set_shape((None, None, 3))
    return image


def read_image(filename: tf.Tensor | str) -> tf.Tensor:
    """Read and decode an image file to ``uint8 (H, W, 3)`` (see :func:`decode_image`).

    A missing file raises ``tf.errors.NotFoundError`` naming it.

    Example:
        >>> read_image("photo.jpg").shape  # doctest: +SKIP
        TensorShape([200, 300, 3])
    """
    return decode_image(tf.io.read_file(filename), filename)
