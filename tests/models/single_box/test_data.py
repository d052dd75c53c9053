import numpy as np
import pytest
import tensorflow as tf

from kdet.datasets.records import Record, RecordSet
from kdet.errors import AnnotationError, ImageError
from kdet.models.single_box.data import (
    load_images,
    load_single_box_data,
    make_dataset,
    random_flip_and_crop,
    single_box_targets,
)


def test_load_gives_relative_boxes_and_resized_images(toy_records):
    data = load_single_box_data(toy_records, image_size=(32, 48))
    assert data.images.shape == (24, 32, 48, 3) and data.images.dtype == np.uint8
    record = toy_records.records[5]
    expected = np.array(record.boxes[0]) / ([record.width, record.height] * 2)
    np.testing.assert_allclose(data.boxes[5], expected, rtol=1e-6)
    assert data.image_sizes[5].tolist() == [record.height, record.width]
    assert len(data.select("test")) == 8
    assert len(data.select("train", ["blue"])) == 8
    with pytest.raises(ValueError, match="Unknown classes"):
        data.select("train", ["green"])


def test_records_without_exactly_one_box_are_rejected(tmp_path):
    records = RecordSet("bad", ["a"], [Record("x.jpg", 8, 8, [[0, 0, 4, 4], [1, 1, 5, 5]], [0, 0])])
    records.root = tmp_path
    with pytest.raises(AnnotationError, match="x.jpg: .*exactly one box.*found 2"):
        single_box_targets(records)


def test_unreadable_images_name_the_file(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(ImageError, match="broken.jpg: cannot read as an image"):
        load_images([bad], (16, 16))
    with pytest.raises(ImageError, match="missing.jpg"):
        load_images([tmp_path / "missing.jpg"], (16, 16))


def _white_box(image):
    ys, xs = np.nonzero(image[..., 0] > 127)
    height, width = image.shape[:2]
    return np.array(
        [xs.min() / width, ys.min() / height, (xs.max() + 1) / width, (ys.max() + 1) / height]
    )


def test_flip_and_crop_move_the_box_with_the_object():
    images = np.zeros((8, 64, 64, 3), np.float32)
    boxes = np.tile(np.array([[0.25, 0.375, 0.5, 0.75]], np.float32), (8, 1))
    images[:, 24:48, 16:32] = 255.0
    out_images, out_boxes = random_flip_and_crop(
        tf.constant(images), tf.constant(boxes), crop=0.8, seed=tf.constant([1, 2])
    )
    out_images, out_boxes = out_images.numpy(), out_boxes.numpy()
    assert not np.allclose(out_boxes, boxes)  # something moved
    for image, box in zip(out_images, out_boxes, strict=True):
        np.testing.assert_allclose(_white_box(image), box, atol=2.5 / 64)


def test_make_dataset_batches_floats_and_targets():
    images = np.zeros((5, 16, 16, 3), np.uint8)
    targets = {"bounding_box": np.full((5, 4), 0.5, np.float32), "class_label": np.arange(5)}
    batches = list(make_dataset(images, targets, batch_size=2, shuffle=True, augment=True, seed=0))
    assert [len(x) for x, _ in batches] == [2, 2, 1]
    assert batches[0][0].dtype == tf.float32
    assert sorted(batches[0][1]) == ["bounding_box", "class_label"]
