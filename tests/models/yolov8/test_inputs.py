import keras
import numpy as np
import pytest
import tensorflow as tf

from kdet.data import resize_with_boxes
from kdet.datasets.records import RecordSet
from kdet.models.yolov8.inputs import (
    KerasCVAugmenter,
    augmenters,
    boxes_to_original,
    evaluation_dataset,
    fit_to_model,
    original_sizes,
    training_dataset,
)


def test_fit_to_model_and_back_is_the_identity_for_boxes():
    image = tf.ones((50, 100, 3), tf.uint8) * 200
    fitted = fit_to_model(image, (64, 64))
    assert fitted.shape == (64, 64, 3) and fitted.dtype == tf.float32
    assert float(fitted[32, 10, 0]) == pytest.approx(200.0)  # centred content
    assert float(fitted[2, 10, 0]) == 0.0  # padding above
    box = tf.constant([[10.0, 5.0, 90.0, 45.0]])
    _, moved = resize_with_boxes(image, box, (64, 64), keep_aspect_ratio=True)
    np.testing.assert_allclose(boxes_to_original(moved, 50, 100, (64, 64)), box, atol=1e-4)
    outside = tf.constant([[-5.0, -5.0, 70.0, 70.0]])
    assert boxes_to_original(outside, 50, 100, (64, 64)).numpy().tolist() == [[0, 0, 100, 50]]


def test_training_batches_are_dense_padded_and_inside_the_image(tiny_records):
    train = training_dataset(
        tiny_records.split("train"), image_size=(64, 64), batch_size=4, max_boxes=5, seed=3
    )
    batch = next(iter(train))
    images, labels = batch["images"], batch["bounding_boxes"]
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
    batch = next(iter(train))
    images, labels = batch["images"], batch["bounding_boxes"]
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


def test_evaluation_batches_keep_record_order_without_augmentation(tiny_records):
    test = tiny_records.split("test")  # 48x80 images
    batch = next(iter(evaluation_dataset(test, image_size=(64, 64), batch_size=4)))
    boxes = batch["bounding_boxes"]["boxes"].numpy()
    for record, moved in zip(test.records, boxes, strict=True):
        back = boxes_to_original(moved[:2], record.height, record.width, (64, 64))
        np.testing.assert_allclose(back, record.boxes, atol=1e-3)
    np.testing.assert_array_equal(original_sizes(test), [[48, 80]] * 4)


def test_empty_record_set_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="no records"):
        training_dataset(RecordSet("x", ["a"], [], tmp_path), image_size=(64, 64), batch_size=2)


def test_flip_and_shear_are_keras_core_and_keras_cv_only_resizes_and_mosaics():
    layers = augmenters((64, 64), shear=0.2, mosaic=True, seed=0)
    assert [type(layer) for layer in layers[:2]] == [
        keras.layers.RandomFlip,
        keras.layers.RandomShear,
    ]
    assert [type(a.layer).__name__ for a in layers[2:]] == ["JitteredResize", "Mosaic"]
    assert all(isinstance(a, KerasCVAugmenter) for a in layers[2:])


@pytest.mark.parametrize("seed", [0, 4])  # 0: keras-cv 0.9 alone would ignore it
def test_augmented_batches_repeat_with_the_seed(tiny_records, seed):
    def first_batch(seed):
        train = training_dataset(
            tiny_records.split("train"),
            image_size=(64, 64),
            batch_size=4,
            shear=0.2,
            mosaic=True,
            shuffle_buffer_batches=1,
            seed=seed,
        )
        return next(iter(train))

    first, again, other = first_batch(seed), first_batch(seed), first_batch(seed + 1)
    for key in ("boxes", "classes"):
        np.testing.assert_array_equal(first["bounding_boxes"][key], again["bounding_boxes"][key])
    np.testing.assert_array_equal(first["images"], again["images"])
    assert not np.array_equal(first["images"], other["images"])
    real = first["bounding_boxes"]["classes"].numpy() >= 0
    boxes = first["bounding_boxes"]["boxes"].numpy()[real]
    assert real.any() and (boxes >= 0).all() and (boxes <= 64).all()
