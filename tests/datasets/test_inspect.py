"""Dataset reports, format detection and ``check_dataset`` (the back end of ``kdet data check``)."""

import json

import pytest

from kdet.datasets import detect_format
from kdet.datasets.inspect import (
    EXIT_ERROR,
    EXIT_FATAL,
    EXIT_OK,
    check_dataset,
    dataset_report,
    format_report,
)
from kdet.datasets.records import Record, RecordSet
from kdet.errors import AnnotationError
from tests.datasets.messy import make_coco, make_voc, make_yolo


def toy(records, names=("cat", "dog")):
    return RecordSet("toy", list(names), records)


def test_counts_sizes_and_histogram():
    records = [
        Record("a.jpg", 200, 200, [[0, 0, 31.9, 31.9], [0, 0, 32, 32]], [0, 1], "train"),
        Record("b.jpg", 200, 200, [[0, 0, 96, 96], [0, 0, 5, 5]], [0, 0], "test"),
        Record("c.jpg", 200, 200, [], [], "test"),
    ]
    report = dataset_report(toy(records))
    assert report["images"] == {"test": 2, "train": 1, "total": 3}
    assert report["boxes"] == {"test": 2, "train": 2, "total": 4}
    assert report["classes"] == {"cat": {"test": 2, "train": 1}, "dog": {"test": 0, "train": 1}}
    assert report["images_without_boxes"] == {"test": 1, "train": 0}
    assert report["box_sizes"] == {"small": 2, "medium": 1, "large": 1}
    histogram = {low: count for low, _, count in report["box_size_histogram"]}
    assert (histogram[0], histogram[16], histogram[32], histogram[96]) == (1, 1, 1, 1)
    assert report["fatal"] == [] and report["warnings"] == []
    text = format_report(report)
    assert "toy: 3 images, 4 boxes, 2 classes" in text
    assert "OK: usable for training" in text and "#" in text


def test_fatal_problems_and_warnings():
    assert dataset_report(toy([]))["fatal"] == ["no images"]
    no_boxes = dataset_report(toy([Record("a.jpg", 8, 8, [], [], "train")]))
    assert no_boxes["fatal"] == [
        "no boxes at all",
        "no held-out split to evaluate on (splits: ['train'])",
    ]
    records = [
        Record("a.jpg", 64, 64, [[0, 0, 9, 9]], [0], "train"),
        Record("b.jpg", 64, 64, [[0, 0, 9, 9]], [1], "test"),
        Record("c.jpg", 64, 64, [[0, 0, 9, 9]], [0], None),
    ]
    report = dataset_report(toy(records, ("cat", "dog", "owl")), {"splits": ["train", "val"]})
    assert report["fatal"] == ["1 images have no split", "split 'val' has no images"]
    assert [w["code"] for w in report["warnings"]] == ["class_not_in_train", "class_without_boxes"]
    assert "FATAL: 1 images have no split" in format_report(report)


def test_detect_format(tmp_path):
    assert detect_format(make_voc(tmp_path)) == "voc"
    assert detect_format(make_coco(tmp_path)) == "coco"
    assert detect_format(make_yolo(tmp_path)) == "yolo"
    assert detect_format(tmp_path / "yolo" / "data.yaml") == "yolo"
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("hi")
    with pytest.raises(AnnotationError, match=r"cannot tell the dataset format: looked for"):
        detect_format(tmp_path / "empty")


def test_check_dataset_guesses_and_cleans_up(tmp_path):
    report, code = check_dataset(make_yolo(tmp_path), progress=False)
    assert code == EXIT_OK, report["fatal"]
    assert report["format"] == "yolo" and report["images"]["total"] == 42
    assert report["counts"]["polygon_to_box"] == 1 and len(report["skipped"]) == 4
    json.dumps(report)  # JSON-ready
    assert "repaired (2):" in format_report(report)


def test_check_dataset_exit_codes(tmp_path):
    source = make_voc(tmp_path)
    report, code = check_dataset(source, format="voc", classes=["owl"], out_dir=tmp_path / "o")
    assert code == EXIT_FATAL and report["fatal"][0] == "no boxes at all"
    (tmp_path / "empty").mkdir()
    report, code = check_dataset(tmp_path / "empty")
    assert code == EXIT_ERROR and "cannot tell the dataset format" in report["error"]
    with pytest.raises(ValueError, match="format must be one of"):
        check_dataset(source, format="csv")


def test_check_dataset_fetches_a_built_in(tmp_path):
    report, code = check_dataset("shapes", num_images=10, image_size=64)
    assert code == EXIT_OK and report["images"]["total"] == 10 and report["format"] is None
