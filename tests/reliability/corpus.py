"""The hostile-input corpus, generated in memory: one table per kind of input.

Every case says what kdet does with it; the tests feed each case to every entry point
and check that behaviour. ``STORED`` means "decodes, used as stored (no EXIF rotation),
converted to 8-bit RGB".
"""

import io
import struct
import zlib

import numpy as np
from PIL import Image

WIDTH, HEIGHT = 64, 48


def _picture(mode="RGB", size=(WIDTH, HEIGHT)):
    pixels = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels).convert(mode)


def encode(image, fmt, **options):
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(width=100_000, height=100_000):
    """A small PNG declaring ``width x height`` RGB pixels (30 GB decoded)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    compressor = zlib.compressobj(9)
    rows = compressor.compress(b"\0" * (1 + 3 * width) * 4) + compressor.flush()
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", rows)
        + _png_chunk(b"IEND", b"")
    )


def bmp_bomb(width=60_000, height=-60_000):
    """A BMP header declaring ``width x |height|`` pixels and no pixel data."""
    dib = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + len(dib), 0, 0, 14 + len(dib)) + dib


def exif_rotated_jpeg():
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    return encode(_picture(), "JPEG", exif=exif)


def _png16():
    values = (np.arange(WIDTH * HEIGHT).reshape(HEIGHT, WIDTH) * 9).astype(np.uint16)
    return encode(Image.fromarray(values), "PNG")


JPEG = encode(_picture(), "JPEG")

# name -> (bytes, size (width, height) when it decodes, else the reason kdet gives)
IMAGES = {
    "zero_bytes": (b"", "not a decodable image"),
    "truncated_jpeg": (JPEG[: len(JPEG) * 9 // 10], "cannot read image"),
    "truncated_jpeg_header": (JPEG[:300], "cannot read image"),
    "text_named_jpg": (b"this is not a picture\n", "not a decodable image"),
    "html_named_jpg": (b"<!DOCTYPE html><html>Access Denied</html>", "not a decodable image"),
    "tiff_named_jpg": (encode(_picture(), "TIFF"), "TIFF images cannot be decoded"),
    "png_bomb": (png_bomb(), "image too large"),
    "png_with_alpha": (encode(_picture("RGBA"), "PNG"), (WIDTH, HEIGHT)),
    "png_16_bit": (_png16(), (WIDTH, HEIGHT)),
    "grayscale_jpeg": (encode(_picture("L"), "JPEG"), (WIDTH, HEIGHT)),
    "grayscale_png": (encode(_picture("L"), "PNG"), (WIDTH, HEIGHT)),
    "cmyk_jpeg": (encode(_picture("CMYK"), "JPEG"), (WIDTH, HEIGHT)),
    "exif_rotated_jpeg": (exif_rotated_jpeg(), (WIDTH, HEIGHT)),
    "one_pixel_png": (encode(Image.new("RGB", (1, 1), (9, 9, 9)), "PNG"), (1, 1)),
    "gif": (encode(_picture("P"), "GIF"), (WIDTH, HEIGHT)),
    "bmp": (encode(_picture(), "BMP"), (WIDTH, HEIGHT)),
}
DECODABLE = sorted(name for name, (_, outcome) in IMAGES.items() if isinstance(outcome, tuple))
UNDECODABLE = sorted(name for name, (_, outcome) in IMAGES.items() if isinstance(outcome, str))
