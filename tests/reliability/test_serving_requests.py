"""Exported SavedModels answer bad requests with an error saying what was expected."""

import pytest
import tensorflow as tf

from kdet.export import export_detector
from tests.reliability import corpus
from tests.test_export import whole_image_detector

# Undecodable corpus images -> what serving_default answers.
REJECTED = {
    "zero_bytes": "image_bytes: empty file",
    "truncated_jpeg": "Invalid JPEG data",
    "truncated_jpeg_header": "Invalid JPEG data",
    "text_named_jpg": "image_bytes: not a JPEG, PNG, GIF, BMP or WebP image",
    "html_named_jpg": "image_bytes: not a JPEG, PNG, GIF, BMP or WebP image",
    "tiff_named_jpg": "image_bytes: not a JPEG, PNG, GIF, BMP or WebP image",
    "png_bomb": r"image_bytes: image too large \(more than 89478485 pixels\)",
}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    path = tmp_path_factory.mktemp("export") / "saved_model"
    export_detector(path, whole_image_detector, ["cat", "dog"])
    return tf.saved_model.load(str(path))


def test_every_undecodable_corpus_image_has_a_reason():
    assert sorted(REJECTED) == corpus.UNDECODABLE


@pytest.mark.parametrize("case", corpus.DECODABLE)
def test_decodable_images_are_served_in_their_stored_pixel_grid(served, case):
    data, (width, height) = corpus.IMAGES[case]
    out = served.signatures["serving_default"](image_bytes=tf.constant(data))
    assert out["boxes"].numpy().tolist() == [[0, 0, width, height]]


@pytest.mark.parametrize("case", sorted(REJECTED))
def test_undecodable_bytes_are_rejected_clearly(served, case):
    data, _ = corpus.IMAGES[case]
    with pytest.raises(tf.errors.InvalidArgumentError, match=REJECTED[case]):
        served.signatures["serving_default"](image_bytes=tf.constant(data))


def test_bmp_bomb_is_rejected_before_decoding(served):
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"image_bytes: image too large"):
        served.signatures["serving_default"](image_bytes=tf.constant(corpus.bmp_bomb()))


@pytest.mark.parametrize(
    "image, message",
    [
        (tf.zeros((7, 9, 3), tf.float32), "expected to be a uint8 tensor"),
        (tf.zeros((7, 9), tf.uint8), r"\[7,9\] is not compatible with expected shape \[\?,\?,3\]"),
        (tf.zeros((7, 9, 4), tf.uint8), r"\[7,9,4\] is not compatible with expected shape"),
        (tf.zeros((1, 7, 9, 3), tf.uint8), r"\[1,7,9,3\] is not compatible with expected"),
        (tf.zeros((0, 9, 3), tf.uint8), "image is empty: expected a \\(height, width, 3\\)"),
    ],
    ids=["float32", "rank2", "four_channels", "batched", "empty"],
)
def test_detect_image_rejects_wrong_dtype_rank_and_size(served, image, message):
    with pytest.raises((tf.errors.InvalidArgumentError, TypeError, ValueError), match=message):
        served.signatures["detect_image"](image=image)


@pytest.mark.parametrize(
    "value, message",
    [
        (
            tf.constant([corpus.JPEG, corpus.JPEG]),
            r"\[2\] is not compatible with expected shape \[\]",
        ),
        (tf.constant(3), "expected to be a string tensor"),
    ],
    ids=["batch_of_strings", "int"],
)
def test_serving_default_rejects_non_scalar_or_non_string(served, value, message):
    with pytest.raises((tf.errors.InvalidArgumentError, TypeError, ValueError), match=message):
        served.signatures["serving_default"](image_bytes=value)


def test_failed_export_leaves_no_partial_model(tmp_path):
    def broken(image):
        raise ValueError("detector bug")

    path = tmp_path / "models" / "saved_model"
    with pytest.raises(ValueError, match="detector bug"):
        export_detector(path, broken, ["cat"])
    assert list((tmp_path / "models").iterdir()) == []
    export_detector(path, whole_image_detector, ["cat"])
    export_detector(path, whole_image_detector, ["cat", "dog"])  # replaces the old export
    assert [p.name for p in (tmp_path / "models").iterdir()] == ["saved_model"]
    served = tf.saved_model.load(str(path))
    out = served.signatures["detect_image"](image=tf.zeros((4, 4, 3), tf.uint8))
    assert out["class_names"].numpy().tolist() == [b"dog"]  # class 1 exists only in the new one
