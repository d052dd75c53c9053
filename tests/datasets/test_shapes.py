"""The seeded shapes generator: determinism and exact tight boxes."""

import numpy as np
import pytest
from PIL import Image

from kdet.datasets import shapes
from kdet.datasets.records import RecordSet


def _files(folder):
    return {p.name: p.read_bytes() for p in sorted((folder / "images").iterdir())}


def test_same_seed_gives_identical_files_and_records(tmp_path):
    options = {"num_images": 12, "image_size": 64, "max_objects": 4}
    a = shapes.fetch(tmp_path / "a", seed=7, **options)
    b = shapes.fetch(tmp_path / "b", seed=7, **options)
    c = shapes.fetch(tmp_path / "c", seed=8, **options)
    assert c.records != a.records
    assert a.records == b.records
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    assert (tmp_path / "a/records.json").read_bytes() == (tmp_path / "b/records.json").read_bytes()
    assert _files(tmp_path / "a") != _files(tmp_path / "c")
    assert RecordSet.load(tmp_path / "a").records == a.records


def test_records_describe_the_images(tmp_path):
    records = shapes.fetch(tmp_path, num_images=30, image_size=(48, 80), max_objects=3, seed=1)
    assert records.class_names == ["rectangle", "ellipse", "triangle"]
    assert len(records) == 30
    assert {r.split for r in records.records} == {"train", "test"}
    assert len(records.split("test")) == 6
    seen = set()
    for record in records.records:
        assert (record.width, record.height) == (80, 48)
        assert Image.open(records.image_path(record)).size == (80, 48)
        assert 1 <= len(record.boxes) <= 3 and len(record.boxes) == len(record.classes)
        boxes = record.boxes_array()
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= 80).all() and (boxes[:, 3] <= 48).all()
        seen.update(record.classes)
    assert seen == {0, 1, 2}


@pytest.mark.parametrize("index", range(8))
def test_boxes_are_tight_around_the_drawn_shapes(index):
    pixels, boxes, classes = shapes.draw_image(index, image_size=64, max_objects=4, seed=2)
    for (x1, y1, x2, y2), class_id in zip(boxes, classes, strict=True):
        region = pixels[y1:y2, x1:x2].reshape(-1, 3)
        colours, counts = np.unique(region, axis=0, return_counts=True)
        fill = colours[counts.argmax()]  # the shape's flat colour covers most of its box
        ys, xs = np.nonzero((pixels == fill).all(axis=-1))
        assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x1, y1, x2, y2)
        if class_id == 0:  # a rectangle fills its box
            assert counts.max() == region.shape[0]


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="image_size must be at least 16"):
        shapes.fetch(tmp_path, image_size=8)
    with pytest.raises(ValueError, match="num_images and max_objects must be >= 1"):
        shapes.fetch(tmp_path, num_images=0)
