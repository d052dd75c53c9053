"""Open Images on a small fake mirror folder with the real CSV layouts."""

import functools
import http.server
import io
import threading

import numpy as np
import pytest
from PIL import Image

from kdet.datasets import open_images
from kdet.datasets.records import RecordSet
from kdet.errors import AnnotationError, DownloadError

HEADER = (
    "ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax,"
    "IsOccluded,IsTruncated,IsGroupOf,IsDepiction,IsInside"
)
CLASSES = "/m/01g317,Person\n/m/01940j,Backpack\n/m/0k4j,Car\n/m/0199g,Bicycle\n"
# image id -> (width, height, [(label, XMin, XMax, YMin, YMax)])
IMAGES = {
    "000a": (100, 50, [("/m/01g317", 0.1, 0.5, 0.2, 1.0), ("/m/01940j", 0.2, 0.3, 0.4, 0.6)]),
    "000b": (64, 64, [("/m/01g317", 0.0, 1.0, 0.0, 0.5)]),
    "000c": (80, 40, [("/m/01g317", 0.25, 0.75, 0.25, 0.75)]),
    "000d": (30, 60, [("/m/01940j", 0.5, 1.0, 0.5, 1.0)]),
    "000e": (64, 64, [("/m/0k4j", 0.1, 0.2, 0.1, 0.2)]),  # Car only: never downloaded
}


def make_mirror(root, images=IMAGES, split="validation", header=HEADER):
    classes = root / "storage.googleapis.com/openimages/v5/class-descriptions-boxable.csv"
    classes.parent.mkdir(parents=True, exist_ok=True)
    classes.write_text(CLASSES)
    rows = [header]
    for image_id, (width, height, boxes) in images.items():
        for label, *box in boxes:
            coords = ",".join(str(v) for v in box)
            rows.append(f"{image_id},xclick,{label},1,{coords},0,0,0,0,0")
        path = root / f"s3.amazonaws.com/open-images-dataset/{split}/{image_id}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (width, height), (20, 40, 60)).save(path)
    relative = open_images.ANNOTATION_URLS[split].removeprefix("https://")
    annotations = root / relative
    annotations.parent.mkdir(parents=True, exist_ok=True)
    annotations.write_text("\n".join(rows) + "\n")
    return root


def test_fetch_filters_classes_and_scales_boxes(tmp_path, monkeypatch):
    monkeypatch.setenv("KDET_MIRROR", str(make_mirror(tmp_path / "mirror")))
    out = tmp_path / "oi"
    records = open_images.fetch(out, progress=False)
    assert records.class_names == ["Person", "Backpack"]
    assert records.summary() == {
        "images": 4,
        "boxes": 5,
        "classes": {"Person": 3, "Backpack": 2},
    }
    by_id = {r.image: r for r in records.records}
    first = by_id["validation/000a.jpg"]
    assert (first.width, first.height) == (100, 50)
    np.testing.assert_allclose(first.boxes, [[10, 10, 50, 50], [20, 20, 30, 30]])
    assert first.classes == [0, 1]
    assert not (out / "validation" / "000e.jpg").exists()
    filtered = (out / "downloads" / "validation-annotations-bbox.Person+Backpack.csv").read_text()
    assert "/m/0k4j" not in filtered and filtered.count("\n") == 6  # header + 5 rows
    assert RecordSet.load(out).records == records.records
    assert {r.split for r in records.records} <= {"train", "test"}


def test_second_fetch_reuses_downloads(tmp_path):
    mirror = make_mirror(tmp_path / "mirror")
    out = tmp_path / "oi"
    first = open_images.fetch(out, mirror=str(mirror), progress=False)
    empty = tmp_path / "empty-mirror"
    empty.mkdir()
    second = open_images.fetch(out, mirror=str(empty), progress=False)
    assert second.records == first.records


def test_max_images_per_class_is_deterministic(tmp_path):
    mirror = str(make_mirror(tmp_path / "mirror"))
    chosen = []
    for run in range(2):
        records = open_images.fetch(
            tmp_path / f"run{run}", max_images_per_class=1, seed=3, mirror=mirror, progress=False
        )
        chosen.append(sorted(r.image for r in records.records))
        holding = {c: sum(c in r.classes for r in records.records) for c in (0, 1)}
        assert holding[0] >= 1 and holding[1] >= 1 and len(records) <= 2
    assert chosen[0] == chosen[1]


def test_train_split_streams_the_v6_csv(tmp_path):
    mirror = make_mirror(tmp_path / "mirror", split="train")
    records = open_images.fetch(
        tmp_path / "oi", classes=("Backpack",), split="train", mirror=str(mirror), progress=False
    )
    assert records.summary()["classes"] == {"Backpack": 2}
    assert {r.image for r in records.records} == {"train/000a.jpg", "train/000d.jpg"}


def test_unknown_class_lists_close_matches(tmp_path):
    mirror = str(make_mirror(tmp_path / "mirror"))
    with pytest.raises(ValueError, match=r"'Persn'. Close matches: \['Person'\]"):
        open_images.fetch(tmp_path / "oi", classes=("Persn",), mirror=mirror, progress=False)
    with pytest.raises(ValueError, match="split must be one of"):
        open_images.fetch(tmp_path / "oi", split="val", mirror=mirror, progress=False)


def test_missing_columns_name_the_url(tmp_path):
    mirror = make_mirror(tmp_path / "mirror", header="ImageID,LabelName,XMin,XMax,YMin")
    with pytest.raises(AnnotationError, match=r"validation-annotations-bbox\.csv: .*\['YMax'\]"):
        open_images.fetch(tmp_path / "oi", mirror=str(mirror), progress=False)


def test_box_outside_image_raises_or_skips(tmp_path):
    images = dict(IMAGES, **{"000f": (64, 64, [("/m/01g317", 0.5, 1.5, 0.0, 0.5)])})
    mirror = str(make_mirror(tmp_path / "mirror", images=images))
    with pytest.raises(AnnotationError, match=r"ImageID 000f\): box .* outside the 64x64"):
        open_images.fetch(tmp_path / "a", on_invalid="raise", mirror=mirror, progress=False)
    records = open_images.fetch(tmp_path / "b", mirror=mirror, progress=False)
    assert "validation/000f.jpg" not in {r.image for r in records.records}


def test_non_image_download_fails_and_leaves_no_file(tmp_path):
    mirror = make_mirror(tmp_path / "mirror")
    bad = mirror / "s3.amazonaws.com/open-images-dataset/validation/000b.jpg"
    bad.write_bytes(b"<html>Access Denied</html>")
    out = tmp_path / "oi"
    with pytest.raises(DownloadError, match=r"1 of 4 images failed.*000b\.jpg"):
        open_images.fetch(out, mirror=str(mirror), progress=False, workers=2)
    assert not (out / "validation" / "000b.jpg").exists()
    assert (out / "validation" / "000a.jpg").is_file()
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64)).save(buffer, format="JPEG")
    bad.write_bytes(buffer.getvalue())
    assert len(open_images.fetch(out, mirror=str(mirror), progress=False)) == 4


@pytest.fixture
def http_mirror(tmp_path):
    """The fake mirror folder served by a loopback HTTP server."""
    root = make_mirror(tmp_path / "mirror")
    handler = functools.partial(QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_fetch_over_http_mirror(tmp_path, http_mirror):
    records = open_images.fetch(tmp_path / "oi", mirror=http_mirror, progress=False, workers=4)
    assert records.summary()["classes"] == {"Person": 3, "Backpack": 2}
    assert len(list((tmp_path / "oi" / "validation").glob("*.jpg"))) == 4
