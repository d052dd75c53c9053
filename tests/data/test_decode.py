import numpy as np
import pytest
import tensorflow as tf

from kdet.data import decode_image, read_image
from tests.data.conftest import IMAGES


@pytest.mark.parametrize(("name", "mode", "fmt", "size"), IMAGES)
def test_every_mode_decodes_to_rgb(record_set, name, mode, fmt, size):
    image = read_image(str(record_set.root / name))
    assert image.dtype == tf.uint8
    assert tuple(image.shape) == (size[1], size[0], 3)
    pixels = image.numpy().astype(float)
    # The gradient survives the mode: red grows left to right (gray: all channels equal).
    assert pixels[:, -1, 0].mean() > pixels[:, 0, 0].mean() + 50
    if mode == "L":
        np.testing.assert_array_equal(pixels[..., 0], pixels[..., 1])


@pytest.mark.parametrize(
    ("content", "problem"),
    [(b"", "empty file"), (b"<html>not found</html>", "not a JPEG, PNG, GIF, BMP or WebP")],
)
def test_bad_file_error_names_file(tmp_path, content, problem):
    path = tmp_path / "broken.jpg"
    path.write_bytes(content)
    with pytest.raises(tf.errors.InvalidArgumentError, match=f"broken.jpg: {problem}"):
        read_image(str(path))


def test_missing_file_error_names_file(tmp_path):
    with pytest.raises(tf.errors.NotFoundError, match="missing.jpg"):
        read_image(str(tmp_path / "missing.jpg"))


def test_decode_bytes_keeps_size():
    png = tf.io.encode_png(tf.zeros((5, 7, 4), tf.uint8))
    assert tuple(decode_image(png, "x.png").shape) == (5, 7, 3)
