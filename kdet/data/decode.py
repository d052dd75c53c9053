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

# Largest image kdet decodes: Pillow's decompression-bomb limit, which kdet.datasets
# applies to fetched images too. 89.5 M pixels decode to ~270 MB.
MAX_PIXELS = 89_478_485


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
        tf.errors.InvalidArgumentError: ``"<filename>: empty file"``,
            ``"<filename>: not a JPEG, PNG, GIF, BMP or WebP image"`` or
            ``"<filename>: image too large ..."`` (a header declaring more than
            ``MAX_PIXELS`` pixels) (when run eagerly or when the tf.data element
            is produced).

    Example:
        >>> png = tf.io.encode_png(tf.zeros((4, 6, 1), tf.uint8))
        >>> decode_image(png, "gray.png").shape
        TensorShape([4, 6, 3])
    """
    filename = tf.convert_to_tensor(filename, tf.string)
    # Each check runs only after the previous one passed, so an empty file is reported
    # as empty (not also as "not an image"), whatever order the graph runs ops in.
    checks = (
        (lambda: tf.strings.length(contents) > 0, ": empty file"),
        (lambda: has_image_signature(contents), ": not a JPEG, PNG, GIF, BMP or WebP image"),
        # A decompression bomb is stopped before decoding allocates its memory.
        (
            lambda: tf.reduce_prod(declared_size(contents)) <= MAX_PIXELS,
            f": image too large (more than {MAX_PIXELS} pixels)",
        ),
    )
    for condition, problem in checks:
        check = tf.debugging.Assert(condition(), [tf.strings.join([filename, problem])])
        with tf.control_dependencies([check]):
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
