"""COCO JSON reader on the messy COCO set and its layouts."""

import json
from pathlib import Path

import pytest

from kdet.datasets import coco, fetch
from kdet.datasets.folder import REPORT_FILE
from kdet.errors import AnnotationError
from tests.datasets.messy import encode, make_coco, scene


def by_name(records):
    return {Path(r.image).name: r for r in records.records}


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("coco")
    records = fetch("coco", tmp / "out", path=make_coco(tmp), progress=False)
    return records, json.loads((tmp / "out" / REPORT_FILE).read_text())


def test_messy_coco_counts(imported):
    records, report = imported
    # Category ids 1, 2, 7: id 7 (" Rectangle") merges into the first spelling.
    assert records.class_names == ["rectangle", "ellipse"]
    assert report["counts"] == {
        "annotation_without_image": 2,  # image_id 999, and m_missing.jpg
        "box_clipped": 1,
        "box_inverted": 1,  # negative width
        "class_name_merged": 1,
        "crowd": 1,
        "image_unreadable": 1,
        "invalid_annotation": 1,  # zero height
        "size_mismatch": 1,  # declares 32x32
    }
    assert report["images"] == {"test": 8, "train": 24 + 7}
    assert {r.split for r in records.records} == {"train", "test"}


def test_messy_coco_records(imported):
    records, _ = imported
    found = by_name(records)
    assert {"m_zero.jpg", "m_corrupt.jpg", "m_missing.jpg"}.isdisjoint(found)
    assert found["m_empty.jpg"].boxes == []
    assert len(found["m_crowd.jpg"].boxes) == 1  # the crowd region is dropped
    x1, y1, x2, y2 = found["m_negative.jpg"].boxes[0]
    assert x1 < x2 and y1 < y2
    assert found["m_edge.jpg"].boxes[0][3] == 64.0
    assert (found["m_size.jpg"].width, found["m_size.jpg"].height) == (64, 64)
    assert found["m_case.jpg"].classes == [0]
    assert found["m_rgba.png"].image == "images/train/m_rgba.png"


def test_single_json_is_split_by_fractions(tmp_path):
    folder = tmp_path / "src"
    (folder / "images").mkdir(parents=True)
    data = {"images": [], "annotations": [], "categories": [{"id": 3, "name": "box"}]}
    for i in range(10):
        (folder / "images" / f"{i}.jpg").write_bytes(encode(scene(i)[0]))
        data["images"].append({"id": i, "file_name": f"{i}.jpg", "width": 64, "height": 64})
        data["annotations"].append(
            {"id": i, "image_id": i, "category_id": 3, "bbox": [1.5, 2, 20, 20.5], "iscrowd": 0}
        )
    (folder / "labels.json").write_text(json.dumps(data))
    records = coco.fetch(tmp_path / "out", path=folder / "labels.json", seed=1, progress=False)
    assert records.class_names == ["box"] and records.name == "labels"
    assert [len(records.split(s)) for s in ("train", "test")] == [8, 2]
    assert records.records[0].boxes == [[1.5, 2.0, 21.5, 22.5]]


def test_instances_with_year_and_split_folders(tmp_path):
    for split in ("train2017", "val2017"):
        (tmp_path / split).mkdir()
        (tmp_path / split / "a.jpg").write_bytes(encode(scene(1)[0]))
        content = {
            "images": [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 64}],
            "annotations": [],
            "categories": [{"id": 1, "name": "thing"}],
        }
        (tmp_path / "annotations").mkdir(exist_ok=True)
        (tmp_path / "annotations" / f"instances_{split}.json").write_text(json.dumps(content))
    records = coco.fetch(tmp_path / "out", path=tmp_path, progress=False)
    assert sorted(r.split for r in records.records) == ["train", "val"]


def test_unknown_category_follows_on_invalid(tmp_path):
    source = make_coco(tmp_path)
    path = source / "annotations" / "instances_test.json"
    data = json.loads(path.read_text())
    data["annotations"][0]["category_id"] = 42
    path.write_text(json.dumps(data))
    with pytest.raises(AnnotationError, match=r"instances_test.json .*unknown category_id 42"):
        coco.fetch(tmp_path / "out", path=path, on_invalid="raise", progress=False)
    records = coco.fetch(tmp_path / "out", path=path, progress=False)
    assert len(records) == 7


def test_malformed_json_names_the_file(tmp_path):
    bad = tmp_path / "instances_x.json"
    bad.write_text("{not json")
    with pytest.raises(AnnotationError, match="instances_x.json: not a JSON file"):
        coco.fetch(tmp_path / "out", path=bad)
    bad.write_text(json.dumps({"images": [{"file_name": "a.jpg"}]}))
    with pytest.raises(AnnotationError, match="lacks the key 'id'"):
        coco.fetch(tmp_path / "out", path=bad)
