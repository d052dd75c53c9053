"""YOLO txt reader on the messy YOLO set, data.yaml variants and bad label lines."""

import json
from pathlib import Path

import pytest

from kdet.datasets import fetch, yolo
from kdet.datasets.folder import REPORT_FILE
from kdet.errors import AnnotationError
from tests.datasets.messy import encode, make_yolo, scene, yolo_line


def by_name(records):
    return {Path(r.image).name: r for r in records.records}


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("yolo")
    records = fetch("yolo", tmp / "out", path=make_yolo(tmp), progress=False)
    return records, json.loads((tmp / "out" / REPORT_FILE).read_text())


def test_messy_yolo_counts(imported):
    records, report = imported
    assert records.class_names == ["rectangle", "ellipse"]
    assert report["counts"] == {
        "annotation_without_image": 1,  # labels/train/m_orphan.txt
        "box_clipped": 1,
        "image_unreadable": 1,
        "image_without_annotation": 1,  # m_nolabel.jpg
        "invalid_annotation": 2,  # 6 fields; class id 5
        "polygon_to_box": 1,
    }
    assert report["images"] == {"train": 24 + 6, "val": 4, "test": 8}
    skipped = {Path(e["file"]).name: e["reason"] for e in report["skipped"]}
    assert skipped["m_fields.txt"].startswith("line 2: 6 fields, expected 5")
    assert skipped["m_class.txt"].startswith("line 1: class id 5 out of range 0..1")


def test_messy_yolo_records(imported):
    records, _ = imported
    found = by_name(records)
    assert {"m_fields.jpg", "m_class.jpg", "m_corrupt.jpg", "m_orphan.jpg"}.isdisjoint(found)
    assert found["m_nolabel.jpg"].boxes == [] and found["m_empty.jpg"].boxes == []
    assert found["m_edge.jpg"].boxes[0][2] == 64.0
    x1, y1, x2, y2 = found["m_polygon.jpg"].boxes[0]
    assert x2 - x1 >= 14 and y2 - y1 >= 14
    assert found["m_gray.jpg"].width == 64 and found["m_rgba.png"].height == 64
    clean = found["img_000.jpg"]
    assert clean.image == "images/images/train/img_000.jpg"
    assert all(abs(v - round(v)) < 1e-3 for v in clean.boxes[0])  # integer source boxes


def test_yaml_file_or_folder_give_the_same_records(tmp_path):
    source = make_yolo(tmp_path)
    a = yolo.fetch(tmp_path / "a", path=source, progress=False)
    b = yolo.fetch(tmp_path / "b", path=source / "data.yaml", progress=False)
    assert [r.boxes for r in a.records] == [r.boxes for r in b.records]


def test_list_names_txt_lists_and_foreign_root(tmp_path):
    root = tmp_path / "set"
    for i in range(6):
        (root / "images").mkdir(parents=True, exist_ok=True)
        (root / "labels").mkdir(parents=True, exist_ok=True)
        image, objects = scene(i, classes=("rectangle",), count=1)
        (root / "images" / f"{i}.jpg").write_bytes(encode(image))
        (root / "labels" / f"{i}.txt").write_text(yolo_line(0, objects[0][1]) + "\n")
    (root / "train.txt").write_text("".join(f"./images/{i}.jpg\n" for i in range(4)))
    (root / "val.txt").write_text("./images/4.jpg\n./images/5.jpg\n")
    (root / "set.yaml").write_text(
        "path: /nowhere/on/this/machine\ntrain: train.txt\nval: val.txt\nnames: [Box]\n"
    )
    records = yolo.fetch(tmp_path / "out", path=root, progress=False)
    report = json.loads((tmp_path / "out" / REPORT_FILE).read_text())
    assert records.class_names == ["Box"]
    assert [len(records.split(s)) for s in ("train", "val")] == [4, 2]
    assert report["counts"] == {"path_not_found": 1}


def test_bad_line_raises_naming_file_and_line(tmp_path):
    source = make_yolo(tmp_path)
    for name in ("m_corrupt.jpg",):
        (source / "images" / "train" / name).unlink()
    with pytest.raises(AnnotationError, match=r"m_class.txt: line 1: class id 5 out of range"):
        yolo.fetch(tmp_path / "out", path=source, on_invalid="raise", progress=False)


def test_yaml_errors(tmp_path):
    (tmp_path / "data.yaml").write_text("names: {0: a, 2: b}\ntrain: images\n")
    with pytest.raises(AnnotationError, match=r"'names' ids must be 0..1"):
        yolo.fetch(tmp_path / "out", path=tmp_path)
    (tmp_path / "data.yaml").write_text("names: [a]\ntrain: missing\n")
    with pytest.raises(AnnotationError, match="split entry 'missing'"):
        yolo.fetch(tmp_path / "out", path=tmp_path)
    (tmp_path / "data.yaml").write_text("nc: 1\n")
    with pytest.raises(AnnotationError, match="no YOLO data.yaml"):
        yolo.fetch(tmp_path / "out", path=tmp_path)


def test_label_path_follows_ultralytics():
    assert yolo.label_path(Path("d/images/a/x.jpg")) == Path("d/labels/a/x.txt")
    assert yolo.label_path(Path("images/x.png")) == Path("labels/x.txt")
    assert yolo.label_path(Path("flat/x.jpg")) == Path("flat/x.txt")
