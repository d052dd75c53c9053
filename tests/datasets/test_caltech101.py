"""Caltech-101 on a small fake of the official archive (same layout), served from a mirror."""

import io
import logging
import tarfile
import zipfile

import numpy as np
import pytest
import scipy.io
from PIL import Image

from kdet.datasets import caltech101
from kdet.datasets.records import RecordSet
from kdet.errors import AnnotationError

MIRROR_PATH = "data.caltech.edu/records/mzrjq-6wc02/files/caltech-101.zip"
# category -> (annotation folder, [(y1, y2, x1, x2), ...]); images are 64x48.
CATEGORIES = {
    "airplanes": ("Airplanes_Side_2", [(2, 40, 3, 60), (5, 30, 10, 50)]),
    "Faces": ("Faces_2", [(1, 47, 1, 63)]),
    "Faces_easy": ("Faces_3", [(4, 20, 4, 20)]),
    "Motorbikes": ("Motorbikes_16", [(10, 20, 10, 20)]),
    "ant": ("ant", [(0, 48, 0, 64)]),
}


def _add(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _jpeg(mode="RGB"):
    buffer = io.BytesIO()
    Image.new(mode, (64, 48), 128).save(buffer, format="JPEG")
    return buffer.getvalue()


def _mat(box):
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, {"box_coord": np.array([box], dtype=np.uint16)})
    return buffer.getvalue()


def make_archive(mirror, categories=CATEGORIES, mats=None, skip_mat=None):
    """Write a fake caltech-101.zip under ``mirror``; ``mats`` overrides .mat bytes."""
    images, annotations = io.BytesIO(), io.BytesIO()
    with (
        tarfile.open(fileobj=images, mode="w:gz") as image_tar,
        tarfile.open(fileobj=annotations, mode="w") as annotation_tar,
    ):
        for category, (folder, boxes) in categories.items():
            for n, box in enumerate(boxes, start=1):
                _add(image_tar, f"101_ObjectCategories/{category}/image_{n:04d}.jpg", _jpeg())
                name = f"Annotations/{folder}/annotation_{n:04d}.mat"
                if name != skip_mat:
                    _add(annotation_tar, name, (mats or {}).get(name) or _mat(box))
    path = mirror / MIRROR_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(caltech101.IMAGES_ARCHIVE, images.getvalue())
        zf.writestr(caltech101.ANNOTATIONS_ARCHIVE, annotations.getvalue())
    return path


def test_fetch_extracts_only_asked_categories(tmp_path):
    mirror = tmp_path / "mirror"
    make_archive(mirror)
    out = tmp_path / "caltech"
    records = caltech101.fetch(
        out, categories=("Faces_easy", "airplanes", "ant"), mirror=str(mirror), progress=False
    )
    assert records.class_names == ["Faces_easy", "airplanes", "ant"]
    assert records.summary() == {
        "images": 4,
        "boxes": 4,
        "classes": {"Faces_easy": 1, "airplanes": 2, "ant": 1},
    }
    extracted = sorted(p.name for p in (out / "101_ObjectCategories").iterdir())
    assert extracted == ["Faces_easy", "airplanes", "ant"]
    assert sorted(p.name for p in (out / "Annotations").iterdir()) == [
        "Airplanes_Side_2",
        "Faces_3",
        "ant",
    ]
    by_image = {r.image: r for r in records.records}
    plane = by_image["101_ObjectCategories/airplanes/image_0001.jpg"]
    assert (plane.width, plane.height) == (64, 48)
    assert plane.boxes == [[3.0, 2.0, 60.0, 40.0]]  # [y1, y2, x1, x2] -> xyxy
    assert plane.classes == [1]
    assert {r.split for r in records.records} <= {"train", "test"}
    loaded = RecordSet.load(out)
    assert loaded.records == records.records
    assert (out / "downloads" / "caltech-101.zip").is_file()


def test_second_fetch_reuses_the_download(tmp_path):
    mirror = tmp_path / "mirror"
    archive = make_archive(mirror)
    out = tmp_path / "caltech"
    first = caltech101.fetch(out, mirror=str(mirror), progress=False)
    archive.unlink()  # a new download would now fail
    second = caltech101.fetch(out, mirror=str(mirror), progress=False)
    assert second.records == first.records
    assert second.summary()["classes"] == {"airplanes": 2, "Faces": 1, "Motorbikes": 1}


def test_unknown_category_lists_available(tmp_path):
    mirror = tmp_path / "mirror"
    make_archive(mirror)
    with pytest.raises(ValueError, match=r"\['zebra'\].*Available: \['Faces', 'Faces_easy'"):
        caltech101.fetch(
            tmp_path / "c", categories=("Faces", "zebra"), mirror=str(mirror), progress=False
        )


def test_image_without_annotation_names_the_image(tmp_path):
    mirror = tmp_path / "mirror"
    make_archive(mirror, skip_mat="Annotations/Faces_2/annotation_0001.mat")
    with pytest.raises(AnnotationError, match=r"Faces/image_0001\.jpg: no annotation file"):
        caltech101.fetch(tmp_path / "c", mirror=str(mirror), progress=False)


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"this is not a MATLAB file", "not a readable MATLAB file"),
        ("no_box", "no 'box_coord' variable"),
        ("three_values", "'box_coord' has 3 values, expected 4"),
    ],
)
def test_malformed_mat_names_the_file(tmp_path, content, reason):
    if content == "no_box":
        buffer = io.BytesIO()
        scipy.io.savemat(buffer, {"obj_contour": np.zeros((2, 3))})
        content = buffer.getvalue()
    elif content == "three_values":
        buffer = io.BytesIO()
        scipy.io.savemat(buffer, {"box_coord": np.array([[1, 2, 3]], dtype=np.uint16)})
        content = buffer.getvalue()
    name = "Annotations/Motorbikes_16/annotation_0001.mat"
    mirror = tmp_path / "mirror"
    make_archive(mirror, mats={name: content})
    with pytest.raises(AnnotationError, match=rf"annotation_0001\.mat: {reason}"):
        caltech101.fetch(tmp_path / "c", mirror=str(mirror), progress=False)


def test_box_outside_image_raises_or_skips(tmp_path, caplog):
    categories = {"airplanes": ("Airplanes_Side_2", [(2, 40, 3, 60), (2, 40, 3, 200)])}
    mirror = tmp_path / "mirror"
    make_archive(mirror, categories=categories)
    with pytest.raises(AnnotationError, match=r"annotation_0002\.mat: box .* outside the 64x48"):
        caltech101.fetch(
            tmp_path / "a",
            categories=("airplanes",),
            on_invalid="raise",
            mirror=str(mirror),
            progress=False,
        )
    with caplog.at_level(logging.WARNING, logger="kdet.datasets.checks"):
        records = caltech101.fetch(
            tmp_path / "b", categories=("airplanes",), mirror=str(mirror), progress=False
        )
    assert [r.image for r in records.records] == ["101_ObjectCategories/airplanes/image_0001.jpg"]
    assert "annotation_0002.mat" in caplog.text
    assert "skipped 1 of 2 images" in caplog.text


def test_on_invalid_must_be_a_known_choice(tmp_path):
    with pytest.raises(ValueError, match="on_invalid must be one of"):
        caltech101.fetch(tmp_path, on_invalid="ignore")
