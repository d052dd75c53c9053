import numpy as np
import pytest
import tensorflow as tf

from kdet.datasets.records import RecordSet
from kdet.models.yolov8.inputs import (
    evaluation_dataset,
    letterbox,
    letterboxed_images,
    training_dataset,
)


def test_letterbox_keeps_aspect_ratio_and_pads_bottom_right():
    image = tf.ones((50, 100, 3), tf.uint8) * 200
    out, scale = letterbox(image, (64, 64))
    assert out.shape == (64, 64, 3)
    assert float(scale) == pytest.approx(0.64)
    assert float(out[31, 63, 0]) == pytest.approx(200.0)  # resized content: 32 rows
    assert float(out[33, 10, 0]) == 0.0  # padding below


def test_training_batches_are_dense_padded_and_inside_the_image(tiny_records):
    train = training_dataset(
        tiny_records.split("train"), image_size=(64, 64), batch_size=4, max_boxes=5, seed=3
    )
    images, labels = next(iter(train))
    assert images.shape == (4, 64, 64, 3) and images.dtype == tf.float32
    assert labels["boxes"].shape == (4, 5, 4) and labels["classes"].shape == (4, 5)
    real = labels["classes"].numpy() >= 0
    assert real.sum() >= 4  # jitter may crop a box out, never all of them
    assert (labels["classes"].numpy()[~real] == -1).all()
    assert (labels["boxes"].numpy()[~real] == -1).all()
    boxes = labels["boxes"].numpy()[real]
    assert (boxes >= 0).all() and (boxes <= 64).all()
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()


def test_augmented_boxes_follow_their_objects(tiny_records):
    train = training_dataset(tiny_records.split("train"), image_size=(64, 64), batch_size=4, seed=5)
    images, labels = next(iter(train))
    for image, boxes, classes in zip(
        images.numpy(), labels["boxes"].numpy(), labels["classes"].numpy(), strict=True
    ):
        for box, cls in zip(boxes, classes, strict=True):
            if cls < 0 or (box[2] - box[0]) < 4 or (box[3] - box[1]) < 4:
                continue
            x1, y1, x2, y2 = np.round(box).astype(int)
            patch = image[y1 + 1 : y2 - 1, x1 + 1 : x2 - 1]
            channel = 0 if cls == 0 else 1  # red squares, green bars
            assert patch[..., channel].mean() > 150, (box, cls)


def test_evaluation_scales_boxes_with_the_letterbox(tiny_records):
    test = tiny_records.split("test")  # 48x80 images
    images, labels = next(iter(evaluation_dataset(test, image_size=(64, 64), batch_size=4)))
    scale = 64 / 80
    expected = np.asarray(test.records[0].boxes, np.float32) * scale
    np.testing.assert_allclose(labels["boxes"].numpy()[0, :2], expected, rtol=1e-5)
    _, scales = next(iter(letterboxed_images(test, image_size=(64, 64), batch_size=4)))
    np.testing.assert_allclose(scales.numpy(), scale)


def test_empty_record_set_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="no records"):
        training_dataset(RecordSet("x", ["a"], [], tmp_path), image_size=(64, 64), batch_size=2)
