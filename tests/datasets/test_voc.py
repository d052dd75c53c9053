"""Pascal VOC reader on the messy VOC set, its three layouts, hostile XML and URLs."""

import json
import shutil
import zipfile
from pathlib import Path

import pytest

from kdet.datasets import fetch, voc
from kdet.datasets.folder import REPORT_FILE
from kdet.datasets.records import RecordSet
from kdet.errors import AnnotationError, ImageError
from tests.datasets.messy import encode, make_voc, scene, voc_xml


def by_name(records):
    return {Path(r.image).name: r for r in records.records}


def entries(report, kind, code):
    return [e for e in report[kind] if e["code"] == code]


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("voc")
    records = fetch("voc", tmp / "out", path=make_voc(tmp), progress=False)
    return records, json.loads((tmp / "out" / REPORT_FILE).read_text()), tmp / "out"


def test_messy_voc_counts(imported):
    records, report, out = imported
    assert records.class_names == ["ellipse", "rectangle", "triangle"]
    # 24 + 8 clean, 18 messy images of which m_zero and m_corrupt are skipped.
    assert len(records) == 24 + 8 + 16
    assert report["counts"] == {
        "annotation_without_image": 1,  # m_orphan.xml
        "box_clipped": 1,  # m_edge
        "box_inverted": 1,  # m_inverted
        "class_name_merged": 1,  # Rectangle -> rectangle
        "class_not_in_train": 1,  # triangle only in test
        "difficult": 1,
        "extension_mismatch": 2,  # PNG and WebP bytes under .jpg
        "image_unreadable": 1,  # m_corrupt
        "image_without_annotation": 1,  # m_noxml
        "invalid_annotation": 1,  # m_zero
        "size_empty": 1,  # <size> 0x0
        "size_missing": 1,
        "truncated": 1,
    }
    assert report["images"] == {"test": 9, "train": 39}
    assert report["classes"]["triangle"] == {"test": 1, "train": 0}
    assert RecordSet.load(out).summary() == records.summary()


def test_messy_voc_records(imported):
    records, report, out = imported
    found = by_name(records)
    assert {"m_zero.jpg", "m_corrupt.jpg", "m_orphan.jpg"}.isdisjoint(found)
    assert found["m_edge.jpg"].boxes[0][2] == 64.0
    x1, _, x2, _ = found["m_inverted.jpg"].boxes[0]
    assert x1 < x2
    assert found["m_float.jpg"].boxes[0][0] % 1 == 0.5
    assert found["m_empty.jpg"].boxes == [] and found["m_noxml.jpg"].boxes == []
    assert found["m_case.jpg"].classes == [records.class_names.index("rectangle")]
    assert len(found["m_flags.jpg"].boxes) == 2  # difficult and truncated objects kept
    for name in ("m_rgba.png", "m_palette.png", "m_gray.jpg", "m_gray16.png", "m_webp_as_jpg.jpg"):
        assert (found[name].width, found[name].height) == (64, 64)
    assert found["m_size0.jpg"].width == 64 and found["m_nosize.jpg"].height == 64
    assert found["img_000.jpg"].split == "train" and found["m_triangle.jpg"].split == "test"
    for record in records.records:
        assert (out / record.image).is_file()
        assert record.image.startswith("images/JPEGImages/")
    (orphan,) = entries(report, "skipped", "annotation_without_image")
    assert orphan["file"].endswith("m_orphan.xml")


def test_raise_names_the_file(tmp_path):
    source = make_voc(tmp_path)
    with pytest.raises(ImageError, match="m_corrupt.jpg: cannot read image"):
        fetch("voc", tmp_path / "out", path=source, on_invalid="raise", progress=False)
    (source / "JPEGImages" / "m_corrupt.jpg").unlink()
    (source / "Annotations" / "m_corrupt.xml").unlink()
    with pytest.raises(AnnotationError, match=r"m_zero.xml: box .* has zero area"):
        fetch("voc", tmp_path / "out", path=source, on_invalid="raise", progress=False)


def test_hostile_xml_always_stops(tmp_path):
    source = tmp_path / "flat"
    source.mkdir()
    (source / "a.jpg").write_bytes(encode(scene(0)[0]))
    (source / "a.xml").write_text(
        '<?xml version="1.0"?><!DOCTYPE a [<!ENTITY e "x">]>'
        "<annotation><filename>&e;</filename></annotation>"
    )
    with pytest.raises(AnnotationError, match="a.xml: refused hostile XML"):
        voc.fetch(tmp_path / "out", path=source, on_invalid="skip", progress=False)


def _pairs(folder, seeds):
    folder.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        image, objects = scene(seed)
        (folder / f"s{seed}.jpg").write_bytes(encode(image))
        (folder / f"s{seed}.xml").write_text(voc_xml(f"s{seed}.jpg", (64, 64), objects))


def test_split_folders_keep_their_names(tmp_path):
    _pairs(tmp_path / "src" / "train", range(6))
    _pairs(tmp_path / "src" / "valid", range(6, 9))
    records = voc.fetch(tmp_path / "out", path=tmp_path / "src", progress=False)
    assert {r.split for r in records.records} == {"train", "valid"}
    assert len(records.split("valid")) == 3
    assert records.split("valid").records[0].image.startswith("images/valid/")


def test_flat_folder_is_split_by_seed(tmp_path):
    _pairs(tmp_path / "src" / "nested", range(10))
    first = voc.fetch(tmp_path / "a", path=tmp_path / "src", seed=3, progress=False)
    again = voc.fetch(tmp_path / "b", path=tmp_path / "src", seed=3, progress=False)
    assert [r.split for r in first.records] == [r.split for r in again.records]
    assert sorted(r.split for r in first.records).count("test") == 2
    thirds = voc.fetch(tmp_path / "c", path=tmp_path / "src", fractions={"train": 0.5, "val": 0.5})
    assert len(thirds.split("val")) == 5


def test_classes_filter_and_order(tmp_path):
    source = make_voc(tmp_path)
    records = voc.fetch(tmp_path / "out", path=source, classes=["Ellipse"], progress=False)
    report = json.loads((tmp_path / "out" / REPORT_FILE).read_text())
    assert records.class_names == ["Ellipse"]
    assert set(records.summary()["classes"]) == {"Ellipse"}
    assert report["counts"]["dropped_by_classes"] > 0
    with pytest.raises(ValueError, match="classes must be distinct"):
        voc.fetch(tmp_path / "x", path=source, classes=["a", " A"])


def test_reimport_replaces_images_and_refuses_its_own_output(tmp_path):
    _pairs(tmp_path / "src", range(4))
    voc.fetch(tmp_path / "out", path=tmp_path / "src", progress=False)
    (tmp_path / "src" / "s3.jpg").unlink()
    records = voc.fetch(tmp_path / "out", path=tmp_path / "src", progress=False)
    assert len(records) == 3
    assert sorted(p.name for p in (tmp_path / "out" / "images").iterdir()) == [
        "s0.jpg",
        "s1.jpg",
        "s2.jpg",
    ]
    shutil.copytree(tmp_path / "src", tmp_path / "out" / "images" / "again")
    with pytest.raises(ValueError, match="inside the output folder"):
        voc.fetch(tmp_path / "out", path=tmp_path / "out" / "images" / "again", progress=False)


def test_https_archive_through_the_mirror(tmp_path):
    source = make_voc(tmp_path)
    mirror = tmp_path / "mirror"
    archive = mirror / "example.com" / "data" / "shapes_voc.zip"
    archive.parent.mkdir(parents=True)
    with zipfile.ZipFile(archive, "w") as zf:
        for path in source.rglob("*"):
            if path.is_file():
                zf.write(path, f"shapes_voc/{path.relative_to(source).as_posix()}")
    shutil.rmtree(source)
    out = tmp_path / "out"
    records = fetch(
        "voc",
        out,
        path="https://example.com/data/shapes_voc.zip",
        mirror=str(mirror),
        progress=False,
    )
    assert len(records) == 48 and records.name == "shapes_voc"
    assert (out / "downloads" / "shapes_voc.zip").is_file()
    assert (out / "downloads" / "shapes_voc" / "shapes_voc" / "Annotations").is_dir()


def test_parse_voc_reads_flags_and_floats(tmp_path):
    xml = tmp_path / "a.xml"
    xml.write_text(voc_xml("a.jpg", None, [("cat", [1.5, 2, 30, 40.25])], {0: {"difficult": 1}}))
    parsed = voc.parse_voc(xml)
    assert parsed.boxes == [[1.5, 2.0, 30.0, 40.25]]
    assert (parsed.width, parsed.difficult, parsed.truncated) == (None, [True], [False])


def test_stale_filename_does_not_steal_another_image(tmp_path):
    source = tmp_path / "src"
    _pairs(source / "train", range(3))
    _pairs(source / "test", range(3, 5))
    xml = source / "train" / "s1.xml"
    xml.write_text(xml.read_text().replace("<filename>s1.jpg", "<filename>s0.jpg"))
    (source / "train" / "s2.jpg").rename(source / "train" / "other.jpg")
    xml = source / "train" / "s2.xml"
    xml.write_text(xml.read_text().replace("<filename>s2.jpg", "<filename>other.jpg"))
    records = voc.fetch(tmp_path / "out", path=source, progress=False)
    found = by_name(records)
    assert sorted(found) == ["other.jpg", "s0.jpg", "s1.jpg", "s3.jpg", "s4.jpg"]
    assert all(r.boxes for r in records.records)


def test_every_imported_image_feeds_the_pipeline(imported):
    from kdet.data import build_pipeline, from_records

    records, _, _ = imported
    seen = 0
    for split in ("train", "test"):
        data = from_records(records.split(split))
        for batch in build_pipeline(data, image_size=(64, 64), batch_size=16):
            assert batch["images"].shape[1:] == (64, 64, 3)
            seen += batch["images"].shape[0]
    assert seen == len(records)
