"""TFDS reader, offline, on a tiny ``kdet_shapes`` dataset prepared in a temp folder."""

import json

import numpy as np
import pytest

from kdet.datasets import fetch, shapes, tfds_source
from kdet.datasets.folder import REPORT_FILE
from kdet.datasets.tfds_builders import prepare
from kdet.errors import AnnotationError


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tfds")
    source = shapes.fetch(tmp / "shapes", num_images=6, image_size=64, seed=2)
    data_dir = tmp / "tfds"
    prepare("shapes", tmp / "shapes", data_dir)
    return source, data_dir


def _by_original(records):
    # Image files are named <index>_<original stem>; match them back.
    return {r.image.split("_", 1)[1].rsplit(".", 1)[0]: r for r in records.records}


def test_name_with_data_dir_loads_offline(prepared, tmp_path):
    source, data_dir = prepared
    records = fetch("tfds", tmp_path / "out", path="kdet_shapes", data_dir=data_dir, progress=False)
    assert records.class_names == source.class_names
    assert sorted({r.split for r in records.records}) == sorted({r.split for r in source.records})
    imported = _by_original(records)
    for original in source.records:
        stem = original.image.rsplit("/", 1)[-1].rsplit(".", 1)[0]
        record = imported[stem]
        assert record.split == original.split and record.classes == original.classes
        assert (record.width, record.height) == (original.width, original.height)
        np.testing.assert_allclose(record.boxes, original.boxes, atol=0.01)
        assert (tmp_path / "out" / record.image).is_file()
    report = json.loads((tmp_path / "out" / REPORT_FILE).read_text())
    assert report["format"] == "tfds" and sum(report["images"].values()) == 6
    assert not any(p.name.startswith(".tfds-") for p in (tmp_path / "out").iterdir())


def test_builder_folder_and_class_filter(prepared, tmp_path):
    source, data_dir = prepared
    (folder,) = (data_dir / "kdet_shapes").iterdir()
    keep = source.class_names[:1]
    records = tfds_source.fetch(tmp_path / "out", path=folder, classes=keep, progress=False)
    assert records.class_names == keep
    assert sum(records.summary()["classes"].values()) == source.summary()["classes"][keep[0]]


def test_unprepared_dataset_is_a_clear_error(tmp_path):
    with pytest.raises(AnnotationError, match="not prepared in .*download=True"):
        tfds_source.fetch(tmp_path / "out", path="kdet_shapes", data_dir=tmp_path / "empty")
