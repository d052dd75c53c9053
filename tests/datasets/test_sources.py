"""The source registry, and every source fetched from the real mirror
(:func:`tests.conftest.mirror_path`)."""

import logging

import pytest

import kdet.datasets
from kdet.datasets import SOURCES, fetch
from kdet.datasets.records import RecordSet
from tests.conftest import mirror_path


@pytest.fixture
def real_mirror(monkeypatch):
    """KDET_MIRROR set to the real mirror (no mirror: fails in CI, skips elsewhere)."""
    monkeypatch.setenv("KDET_MIRROR", mirror_path())


def test_registry_names_every_source():
    assert sorted(SOURCES) == [
        "caltech101",
        "coco",
        "open_images",
        "raccoon",
        "shapes",
        "tfds",
        "voc",
        "yolo",
    ]
    modules = {"tfds": "tfds_source"}
    for name, function in SOURCES.items():
        assert function.__module__ == f"kdet.datasets.{modules.get(name, name)}"


def test_unknown_name_lists_the_choices(tmp_path):
    with pytest.raises(ValueError, match=r"'pascal'. Choices: \['caltech101', 'coco'"):
        fetch("pascal", tmp_path)


def test_fetch_passes_options(tmp_path):
    records = kdet.datasets.fetch("shapes", tmp_path, num_images=3, image_size=32, seed=4)
    assert len(records) == 3 and (tmp_path / "records.json").is_file()


@pytest.mark.usefixtures("real_mirror")
def test_real_raccoon(tmp_path):
    records = fetch("raccoon", tmp_path, progress=False)
    assert records.summary() == {"images": 200, "boxes": 217, "classes": {"raccoon": 217}}
    assert (len(records.split("train")), len(records.split("test"))) == (160, 40)
    assert RecordSet.load(tmp_path).summary() == records.summary()


@pytest.mark.usefixtures("real_mirror")
def test_real_caltech101(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="kdet.datasets.checks"):
        records = fetch("caltech101", tmp_path, progress=False)
    # The archive holds 800 airplanes; annotation_0118.mat has a zero-height box
    # [y1, y2] = [38, 38], so that image is skipped (logged) and 799 remain.
    assert records.summary()["classes"] == {"airplanes": 799, "Faces": 435, "Motorbikes": 798}
    assert "annotation_0118.mat: box [104.0, 38.0, 126.0, 38.0] is empty" in caplog.text
    assert "skipped 1 of 2033 images" in caplog.text
    images = tmp_path / "101_ObjectCategories"
    assert len(list((images / "airplanes").glob("*.jpg"))) == 800
    assert sorted(p.name for p in images.iterdir()) == ["Faces", "Motorbikes", "airplanes"]


@pytest.mark.usefixtures("real_mirror")
def test_real_open_images(tmp_path):
    records = fetch("open_images", tmp_path, progress=False)
    assert records.summary() == {
        "images": 200,
        "boxes": 374,
        "classes": {"Person": 346, "Backpack": 28},
    }
