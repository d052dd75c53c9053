"""Raccoon on a small fake of the GitHub archive, and hostile Pascal VOC files."""

import io
import logging
import zipfile

import pytest
from PIL import Image

from kdet.datasets import raccoon
from kdet.datasets.records import RecordSet
from kdet.errors import AnnotationError

MIRROR_PATH = "github.com/datitran/raccoon_dataset/archive/refs/heads/master.zip"
TOP = "raccoon_dataset-master"


def voc_xml(filename, size, objects):
    """A Pascal VOC document; ``size`` is ``(w, h)`` or ``None`` to leave it out."""
    size_xml = f"<size><width>{size[0]}</width><height>{size[1]}</height></size>" if size else ""
    objects_xml = "".join(
        f"<object><name>{name}</name><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
        f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
        for name, b in objects
    )
    return f"<annotation><filename>{filename}</filename>{size_xml}{objects_xml}</annotation>"


def _jpeg(size, mode="RGB"):
    buffer = io.BytesIO()
    Image.new(mode, size, 100).save(buffer, format="JPEG")
    return buffer.getvalue()


def default_files():
    """raccoon-1..5: 2 boxes in #1, grayscale #3, wrong <size> in #4, no <size> in #5."""
    files = {}
    specs = {
        1: ((64, 48), "RGB", (64, 48), [(2, 3, 30, 40), (33, 1, 64, 47)]),
        2: ((50, 60), "RGB", (50, 60), [(0, 0, 50, 60)]),
        3: ((64, 48), "L", (64, 48), [(10, 10, 20, 20)]),
        4: ((80, 40), "RGB", (40, 80), [(60, 5, 79, 39)]),
        5: ((32, 32), "RGB", None, [(1, 1, 31, 31)]),
    }
    for n, (size, mode, xml_size, boxes) in specs.items():
        files[f"images/raccoon-{n}.jpg"] = _jpeg(size, mode)
        objects = [("raccoon", b) for b in boxes]
        files[f"annotations/raccoon-{n}.xml"] = voc_xml(f"raccoon-{n}.jpg", xml_size, objects)
    header = "filename,width,height,class,xmin,ymin,xmax,ymax\n"
    files["data/train_labels.csv"] = header + "".join(
        f"raccoon-{n}.jpg,1,1,raccoon,0,0,1,1\n" for n in (1, 1, 2, 4)
    )
    files["data/test_labels.csv"] = header + "raccoon-3.jpg,1,1,raccoon,0,0,1,1\n"
    files["data/raccoon_labels.csv"] = header
    files["LICENSE"] = "MIT"
    files["xml_to_csv.py"] = "print('not extracted')"
    return files


def write_tree(root, files):
    for name, content in files.items():
        path = root / TOP / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())


def make_archive(mirror, files):
    path = mirror / MIRROR_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        for name, content in files.items():
            zf.writestr(f"{TOP}/{name}", content)
    return path


def test_fetch_keeps_author_split_and_real_sizes(tmp_path, monkeypatch, caplog):
    mirror = tmp_path / "mirror"
    make_archive(mirror, default_files())
    monkeypatch.setenv("KDET_MIRROR", str(mirror))
    out = tmp_path / "raccoon"
    with caplog.at_level(logging.WARNING, logger="kdet.datasets.raccoon"):
        records = raccoon.fetch(out, progress=False)
    assert records.summary() == {"images": 5, "boxes": 6, "classes": {"raccoon": 6}}
    by_name = {r.image.rsplit("/", 1)[1]: r for r in records.records}
    assert {n: r.split for n, r in by_name.items() if n != "raccoon-5.jpg"} == {
        "raccoon-1.jpg": "train",
        "raccoon-2.jpg": "train",
        "raccoon-3.jpg": "test",
        "raccoon-4.jpg": "train",
    }
    assert by_name["raccoon-5.jpg"].split in ("train", "test")  # in neither CSV: seeded split
    assert by_name["raccoon-1.jpg"].boxes == [[2, 3, 30, 40], [33, 1, 64, 47]]
    assert by_name["raccoon-1.jpg"].image == f"{TOP}/images/raccoon-1.jpg"
    # The image file wins over a wrong or missing <size>.
    assert (by_name["raccoon-4.jpg"].width, by_name["raccoon-4.jpg"].height) == (80, 40)
    assert (by_name["raccoon-5.jpg"].width, by_name["raccoon-5.jpg"].height) == (32, 32)
    assert "raccoon-4.xml: <size> says 40x80 but the image is 80x40" in caplog.text
    assert "raccoon-5.xml: <size> says NonexNone" in caplog.text
    assert Image.open(out / by_name["raccoon-3.jpg"].image).mode == "L"
    assert not (out / TOP / "xml_to_csv.py").exists()
    assert RecordSet.load(out).records == records.records


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<annotation><filename>&lol3;</filename></annotation>"""

EXTERNAL_ENTITY = """<?xml version="1.0"?>
<!DOCTYPE annotation [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<annotation><filename>&secret;</filename></annotation>"""

BARE_DTD = """<?xml version="1.0"?>
<!DOCTYPE annotation SYSTEM "http://example.invalid/voc.dtd">
<annotation><filename>a.jpg</filename></annotation>"""


@pytest.mark.parametrize(
    "xml, reason",
    [
        (BILLION_LAUGHS, "refused hostile XML"),
        (EXTERNAL_ENTITY, "refused hostile XML"),
        (BARE_DTD, "refused hostile XML"),
        ("<annotation><object>", "not well-formed XML"),
        ("<html></html>", "root element is <html>"),
        (
            voc_xml("a.jpg", (64, 48), [("raccoon", ("a", 1, 2, 3))]),
            "<bndbox/xmin> is not a number: 'a'",
        ),
        (
            "<annotation><object><name>raccoon</name></object></annotation>",
            "object 'raccoon' lacks a complete <bndbox>",
        ),
    ],
)
def test_bad_xml_raises_naming_the_file(tmp_path, xml, reason):
    files = default_files()
    files["annotations/raccoon-2.xml"] = xml
    write_tree(tmp_path, files)
    with pytest.raises(AnnotationError, match=rf"raccoon-2\.xml: {reason}"):
        raccoon.parse(tmp_path)


def test_hostile_archive_xml_stops_fetch(tmp_path):
    files = default_files()
    files["annotations/raccoon-1.xml"] = EXTERNAL_ENTITY
    mirror = tmp_path / "mirror"
    make_archive(mirror, files)
    with pytest.raises(AnnotationError, match=r"raccoon-1\.xml: refused hostile XML"):
        raccoon.fetch(tmp_path / "out", mirror=str(mirror), progress=False)
    assert not (tmp_path / "out" / "records.json").exists()


@pytest.mark.parametrize(
    "objects, reason",
    [
        ([("raccoon", (10, 10, 90, 20))], "outside the 50x60 image"),
        ([("raccoon", (30, 10, 20, 20))], "empty or inverted"),
        ([("dog", (1, 1, 20, 20))], r"unknown class names \['dog'\]"),
    ],
)
def test_invalid_content_raises_or_skips(tmp_path, caplog, objects, reason):
    files = default_files()
    files["annotations/raccoon-2.xml"] = voc_xml("raccoon-2.jpg", (50, 60), objects)
    write_tree(tmp_path, files)
    with pytest.raises(AnnotationError, match=rf"raccoon-2\.xml: .*{reason}"):
        raccoon.parse(tmp_path, on_invalid="raise")
    with caplog.at_level(logging.WARNING, logger="kdet.datasets.checks"):
        records = raccoon.parse(tmp_path)
    assert len(records) == 4
    assert "raccoon-2.jpg" not in {r.image.rsplit("/", 1)[1] for r in records.records}
    assert "skipped 1 of 5 images" in caplog.text


def test_image_without_objects_is_valid(tmp_path):
    files = default_files()
    files["annotations/raccoon-2.xml"] = voc_xml("raccoon-2.jpg", (50, 60), [])
    write_tree(tmp_path, files)
    records = raccoon.parse(tmp_path)
    empty = [r for r in records.records if r.image.endswith("raccoon-2.jpg")]
    assert len(empty) == 1 and empty[0].boxes == [] and empty[0].classes == []


def test_missing_xml_and_split_conflict(tmp_path):
    files = default_files()
    del files["annotations/raccoon-2.xml"]
    write_tree(tmp_path / "a", files)
    with pytest.raises(AnnotationError, match=r"raccoon-2\.jpg: no annotation file"):
        raccoon.parse(tmp_path / "a")
    files = default_files()
    files["data/test_labels.csv"] += "raccoon-1.jpg,1,1,raccoon,0,0,1,1\n"
    write_tree(tmp_path / "b", files)
    with pytest.raises(AnnotationError, match=r"raccoon-1\.jpg is also in another split"):
        raccoon.parse(tmp_path / "b")


def test_split_csv_without_filename_column(tmp_path):
    files = default_files()
    files["data/train_labels.csv"] = "name,width\nraccoon-1.jpg,1\n"
    write_tree(tmp_path, files)
    with pytest.raises(AnnotationError, match=r"train_labels\.csv: no 'filename' column"):
        raccoon.parse(tmp_path)
