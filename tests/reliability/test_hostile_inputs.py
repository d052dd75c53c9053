"""The hostile-input corpus (``corpus.py``) through every entry point that reads user data.

Entry points: fetch (``raccoon``, ``caltech101``, ``open_images`` sources and the ``kdet
fetch`` command), the input pipeline (``kdet.data.read_image``) and TFDS prepare. The
served SavedModels get the same images in ``test_serving_requests.py``.

Cases handled and tested where they live are not repeated here:
``tests/datasets/test_raccoon.py`` (box outside / inverted, unknown class, billion laughs,
external entity, bare DTD, malformed XML, missing XML, split CSV without ``filename``,
image without objects), ``tests/datasets/test_caltech101.py`` (malformed ``.mat``,
missing annotation), ``tests/datasets/test_open_images.py`` (missing CSV columns, box
outside, HTML instead of an image) and ``tests/datasets/test_download.py`` (each
hostile archive and network fault against ``extract``/``download`` directly). Here the
archive and network tables of ``test_download.py`` are replayed through ``fetch``.
"""

import io
import logging
import re
import zipfile
from pathlib import Path

import pytest
import tensorflow as tf

from kdet import cli
from kdet.data import read_image
from kdet.datasets import caltech101, open_images, raccoon
from kdet.datasets.records import Record, RecordSet
from kdet.datasets.tfds_builders import prepare
from kdet.errors import AnnotationError, ArchiveError, DownloadError, ImageError
from tests.datasets import test_caltech101 as caltech_fakes
from tests.datasets import test_open_images as open_images_fakes
from tests.datasets import test_raccoon as raccoon_fakes
from tests.datasets.test_download import HOSTILE, put, server  # noqa: F401  (a fixture)
from tests.reliability import corpus

TOP = raccoon_fakes.TOP


@pytest.fixture(autouse=True)
def no_env_mirror(monkeypatch):
    monkeypatch.delenv("KDET_MIRROR", raising=False)


def tree(root):
    return sorted(str(p.relative_to(root)) for p in Path(root).rglob("*"))


# ----------------------------------------------------------------------------- images


def raccoon_files_with(image_bytes, size):
    """The fake raccoon files with ``raccoon-2.jpg`` replaced, boxed whole when it decodes."""
    files = raccoon_fakes.default_files()
    files["images/raccoon-2.jpg"] = image_bytes
    size = size if isinstance(size, tuple) else (50, 60)
    objects = [("raccoon", (0, 0, *size))]
    files["annotations/raccoon-2.xml"] = raccoon_fakes.voc_xml("raccoon-2.jpg", size, objects)
    return files


def parse_raccoon(root, image_bytes, size):
    raccoon_fakes.write_tree(root, raccoon_files_with(image_bytes, size))
    records = raccoon.parse(root)
    return {r.image.rsplit("/", 1)[1]: r for r in records.records}["raccoon-2.jpg"]


def parse_caltech(root, image_bytes, size):
    width, height = size if isinstance(size, tuple) else (64, 48)
    image = root / caltech101.IMAGES_DIR / "airplanes" / "image_0001.jpg"
    mat = root / caltech101.ANNOTATIONS_DIR / "Airplanes_Side_2" / "annotation_0001.mat"
    for path in (image, mat):
        path.parent.mkdir(parents=True)
    image.write_bytes(image_bytes)
    mat.write_bytes(caltech_fakes._mat((0, height, 0, width)))
    (record,) = caltech101.parse(root, ["airplanes"]).records
    return record


PARSERS = {"raccoon": (parse_raccoon, "raccoon-2.jpg"), "caltech101": (parse_caltech, "0001.jpg")}


@pytest.mark.parametrize("case", corpus.DECODABLE)
@pytest.mark.parametrize("source", sorted(PARSERS))
def test_fetch_keeps_decodable_images_in_their_stored_size(tmp_path, caplog, source, case):
    data, size = corpus.IMAGES[case]
    parse, name = PARSERS[source]
    with caplog.at_level(logging.WARNING, logger="kdet.datasets.checks"):
        record = parse(tmp_path, data, size)
    assert (record.width, record.height) == size
    assert record.boxes == [[0, 0, *size]]
    rotated = "EXIF orientation 6 is ignored" in caplog.text
    assert rotated == (case == "exif_rotated_jpeg")
    if rotated:
        assert name in caplog.text


@pytest.mark.parametrize("case", corpus.UNDECODABLE)
@pytest.mark.parametrize("source", sorted(PARSERS))
def test_fetch_stops_at_an_undecodable_image_naming_it(tmp_path, source, case):
    data, reason = corpus.IMAGES[case]
    parse, name = PARSERS[source]
    with pytest.raises(ImageError, match=rf"{re.escape(name)}: {reason}"):
        parse(tmp_path, data, reason)


@pytest.mark.parametrize("case", sorted(corpus.IMAGES))
def test_open_images_fetch_checks_each_downloaded_image(tmp_path, case):
    data, outcome = corpus.IMAGES[case]
    mirror = open_images_fakes.make_mirror(tmp_path / "mirror")
    (mirror / "s3.amazonaws.com/open-images-dataset/validation/000c.jpg").write_bytes(data)
    out = tmp_path / "oi"
    if isinstance(outcome, str):
        with pytest.raises((DownloadError, ImageError), match=r"000c\.jpg"):
            open_images.fetch(out, mirror=str(mirror), progress=False, workers=1)
        assert not (out / "records.json").exists()
        if case != "tiff_named_jpg":  # Pillow reads TIFF: it is refused after the download
            assert not (out / "validation" / "000c.jpg").exists()
        return
    records = open_images.fetch(out, mirror=str(mirror), progress=False, workers=1)
    record = {r.image: r for r in records.records}["validation/000c.jpg"]
    assert (record.width, record.height) == outcome


# Undecodable corpus images -> what the tf.data pipeline says. A truncated JPEG is found
# by TensorFlow's decoder, whose message cannot name the file: fetch and prepare decode
# every image once, so such a file never reaches a pipeline through them.
PIPELINE_REJECTS = {
    "zero_bytes": "{name}: empty file",
    "truncated_jpeg": "Invalid JPEG data",
    "truncated_jpeg_header": "Invalid JPEG data",
    "text_named_jpg": "{name}: not a JPEG, PNG, GIF, BMP or WebP image",
    "html_named_jpg": "{name}: not a JPEG, PNG, GIF, BMP or WebP image",
    "tiff_named_jpg": "{name}: not a JPEG, PNG, GIF, BMP or WebP image",
    "png_bomb": "{name}: image too large",
}


def test_every_undecodable_image_has_a_pipeline_reason():
    assert sorted(PIPELINE_REJECTS) == corpus.UNDECODABLE


@pytest.mark.parametrize("case", sorted(corpus.IMAGES))
def test_pipeline_decodes_to_rgb_or_names_the_file(tmp_path, case):
    data, outcome = corpus.IMAGES[case]
    path = tmp_path / f"{case}.jpg"
    path.write_bytes(data)
    if isinstance(outcome, str):
        message = PIPELINE_REJECTS[case].format(name=re.escape(str(path)))
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            read_image(str(path))
        return
    image = read_image(str(path))
    assert image.dtype == tf.uint8
    assert image.shape == (outcome[1], outcome[0], 3)


def corpus_record_set(root, cases):
    root.mkdir()
    records = []
    for case in cases:
        data, size = corpus.IMAGES[case]
        (root / f"{case}.img").write_bytes(data)
        width, height = size if isinstance(size, tuple) else (64, 48)
        records.append(Record(f"{case}.img", width, height, [[0, 0, 1, 1]], [0], "train"))
    record_set = RecordSet("corpus", ["thing"], records, root)
    record_set.save()
    return root


def test_tfds_prepare_converts_every_decodable_image(tmp_path):
    records_dir = corpus_record_set(tmp_path / "records", corpus.DECODABLE)
    builder = prepare("shapes", records_dir, tmp_path / "tfds")
    shapes = {
        example["image/filename"].numpy().decode(): tuple(example["image"].shape)
        for example in builder.as_dataset(split="train")
    }
    expected = {}
    for case in corpus.DECODABLE:
        width, height = corpus.IMAGES[case][1]
        expected[f"{case}.img"] = (height, width, 3)
    assert shapes == expected


@pytest.mark.parametrize("case", ["truncated_jpeg", "png_bomb"])
def test_tfds_prepare_names_an_undecodable_image(tmp_path, case):
    records_dir = corpus_record_set(tmp_path / "records", ["grayscale_png", case])
    with pytest.raises(ImageError, match=rf"{case}\.img: cannot decode image"):
        prepare("shapes", records_dir, tmp_path / "tfds")


# ----------------------------------------------------------------------------- annotations

# VOC objects of raccoon-2 (a 50x60 image) -> the boxes kept (repaired), or the reason the
# image is skipped (on_invalid="skip", counted) or the fetch stopped (on_invalid="raise").
VOC_CONTENT = {
    "nan": ([("raccoon", ("nan", 1, 20, 20))], "non-finite coordinate"),
    "infinite": ([("raccoon", (1, 1, "inf", 20))], "non-finite coordinate"),
    "negative": ([("raccoon", (-30, 1, 20, 20))], "outside the 50x60 image"),
    "zero_area": ([("raccoon", (10, 10, 10, 20))], "empty or inverted"),
    "half_pixel_over": ([("raccoon", (-0.5, 0, 50.5, 60))], [[0.0, 0.0, 50.0, 60.0]]),
    "one_good_one_bad": (
        [("raccoon", (1, 1, 20, 20)), ("raccoon", (5, 5, 5, 5))],
        "empty or inverted",
    ),
}


@pytest.mark.parametrize("case", sorted(VOC_CONTENT))
def test_voc_box_content_is_repaired_skipped_or_raised(tmp_path, caplog, case):
    objects, outcome = VOC_CONTENT[case]
    files = raccoon_fakes.default_files()
    files["annotations/raccoon-2.xml"] = raccoon_fakes.voc_xml("raccoon-2.jpg", (50, 60), objects)
    raccoon_fakes.write_tree(tmp_path, files)
    if isinstance(outcome, list):
        records = raccoon.parse(tmp_path, on_invalid="raise")
        kept = {r.image.rsplit("/", 1)[1]: r for r in records.records}["raccoon-2.jpg"]
        assert kept.boxes == outcome
        return
    with pytest.raises(AnnotationError, match=rf"raccoon-2\.xml: .*{outcome}"):
        raccoon.parse(tmp_path, on_invalid="raise")
    with caplog.at_level(logging.WARNING):
        records = raccoon.parse(tmp_path)
    assert "raccoon-2.jpg" not in {r.image.rsplit("/", 1)[1] for r in records.records}
    assert "skipped 1 of 5 images" in caplog.text


def test_voc_xml_encodings(tmp_path):
    files = raccoon_fakes.default_files()
    body = raccoon_fakes.voc_xml("raccoon-2.jpg", (50, 60), [("raccoon", (1, 1, 20, 20))])
    latin1 = body.replace("raccoon-2.jpg</filename>", "rac\u00e7oon-2.jpg</filename>")
    # Declared Latin-1: valid XML, parsed.
    files["annotations/raccoon-2.xml"] = (
        '<?xml version="1.0" encoding="ISO-8859-1"?>' + latin1
    ).encode("latin-1")
    raccoon_fakes.write_tree(tmp_path / "declared", files)
    assert len(raccoon.parse(tmp_path / "declared")) == 5
    # Undeclared Latin-1 bytes are not UTF-8: not well-formed, the file is named.
    files["annotations/raccoon-2.xml"] = latin1.encode("latin-1")
    raccoon_fakes.write_tree(tmp_path / "undeclared", files)
    with pytest.raises(AnnotationError, match=r"raccoon-2\.xml: not well-formed XML"):
        raccoon.parse(tmp_path / "undeclared")


def test_non_utf8_csv_files_are_named(tmp_path):
    files = raccoon_fakes.default_files()
    files["data/test_labels.csv"] = "filename,width\nrac\u00e7oon-3.jpg,1\n".encode("latin-1")
    raccoon_fakes.write_tree(tmp_path, files)
    with pytest.raises(AnnotationError, match=r"test_labels\.csv: not UTF-8 text"):
        raccoon.parse(tmp_path)
    mirror = open_images_fakes.make_mirror(tmp_path / "mirror")
    descriptions = mirror / "storage.googleapis.com/openimages/v5/class-descriptions-boxable.csv"
    descriptions.write_bytes("/m/01g317,Person\n/m/0k4j,Voiture \u00e9lectrique\n".encode("cp1252"))
    with pytest.raises(AnnotationError, match=r"class-descriptions-boxable\.csv: not UTF-8"):
        open_images.fetch(tmp_path / "oi", mirror=str(mirror), progress=False)


def test_open_images_nan_box_is_skipped_or_raised(tmp_path):
    images = dict(
        open_images_fakes.IMAGES, **{"000f": (64, 64, [("/m/01g317", "nan", 0.5, 0.0, 0.5)])}
    )
    mirror = str(open_images_fakes.make_mirror(tmp_path / "mirror", images=images))
    with pytest.raises(AnnotationError, match=r"ImageID 000f\): box .* non-finite"):
        open_images.fetch(tmp_path / "a", on_invalid="raise", mirror=mirror, progress=False)
    records = open_images.fetch(tmp_path / "b", mirror=mirror, progress=False)
    assert "validation/000f.jpg" not in {r.image for r in records.records}
    assert len(records) == 4


# ----------------------------------------------------------------------------- archives


def hostile_fetch(tmp_path, case):
    """Serve the hostile archive ``case`` as raccoon's zip (zip cases) or Caltech-101's
    image tar (tar cases) and fetch it into ``tmp_path/out``."""
    data = HOSTILE[case](tmp_path)
    mirror = tmp_path / "mirror"
    out = tmp_path / "out"
    if case.startswith("zip"):
        path = mirror / raccoon_fakes.MIRROR_PATH
        path.parent.mkdir(parents=True)
        path.write_bytes(data)
        return out, lambda: raccoon.fetch(out, mirror=str(mirror), progress=False)
    path = caltech_fakes.make_archive(mirror)
    with zipfile.ZipFile(path) as archive:  # swap in the hostile images tar
        members = {n: archive.read(n) for n in archive.namelist()}
    members[caltech101.IMAGES_ARCHIVE] = data
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return out, lambda: caltech101.fetch(out, mirror=str(mirror), progress=False)


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_archive_stops_fetch_and_writes_only_inside_out(tmp_path, case):
    out, run = hostile_fetch(tmp_path, case)
    before = tree(tmp_path)
    with pytest.raises((ArchiveError, DownloadError)) as caught:
        run()
    assert "archive" in type(caught.value).__name__.lower() or "verification" in str(caught.value)
    outside = [p for p in tree(tmp_path) if p != "out" and not p.startswith("out/")]
    assert outside == before  # nothing written outside the destination
    written = tree(out) if out.exists() else []
    assert "records.json" not in written
    assert not [p for p in written if ".partial" in p or p.endswith(".part")]
    assert not [p for p in written if "evil" in p]


# ----------------------------------------------------------------------------- network


def raccoon_zip_bytes():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in raccoon_fakes.default_files().items():
            archive.writestr(f"{TOP}/{name}", content)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "faults, outcome",
    [
        (["cut"], "ok"),  # resumed with a Range request
        (["short"], "ok"),  # fewer bytes than announced: retried
        ([500], "ok"),  # retried
        ([404], r"HTTP 404"),  # fails at once
    ],
    ids=["cut_half_way", "short_body", "http_500_once", "http_404"],
)
def test_network_faults_during_fetch(server, tmp_path, faults, outcome):  # noqa: F811
    remote = "/" + raccoon_fakes.MIRROR_PATH
    put(server, raccoon_fakes.MIRROR_PATH, raccoon_zip_bytes())
    server.faults[remote] = list(faults)
    out = tmp_path / "out"
    if outcome == "ok":
        records = raccoon.fetch(out, mirror=server.base, progress=False)
        assert len(records) == 5
        assert tree(out / "downloads") == [f"{TOP}.zip"]  # complete, no .part left
    else:
        with pytest.raises(DownloadError, match=outcome) as caught:
            raccoon.fetch(out, mirror=server.base, progress=False)
        assert caught.value.where == raccoon.URL
        assert tree(out) == ["downloads"]  # no archive, no .part


def test_html_page_instead_of_the_zip_keeps_no_file(server, tmp_path):  # noqa: F811
    put(server, raccoon_fakes.MIRROR_PATH, b"<!DOCTYPE html><html>Rate limit</html>")
    out = tmp_path / "out"
    with pytest.raises(DownloadError, match="failed verification.*not a valid zip"):
        raccoon.fetch(out, mirror=server.base, progress=False)
    assert tree(out) == ["downloads"]


# ----------------------------------------------------------------------------- kdet fetch


@pytest.mark.parametrize(
    "change, message",
    [
        (
            {"images/raccoon-2.jpg": corpus.IMAGES["truncated_jpeg"][0]},
            r"raccoon-2\.jpg: cannot read image",
        ),
        ({"annotations/raccoon-2.xml": raccoon_fakes.EXTERNAL_ENTITY}, "refused hostile XML"),
        ({"data/train_labels.csv": "name\nraccoon-1.jpg\n"}, "no 'filename' column"),
    ],
    ids=["truncated_image", "external_entity", "wrong_csv_columns"],
)
def test_kdet_fetch_prints_one_error_line_and_exits_1(tmp_path, capsys, change, message):
    files = {**raccoon_fakes.default_files(), **change}
    mirror = tmp_path / "mirror"
    raccoon_fakes.make_archive(mirror, files)
    code = cli.main(["fetch", "raccoon", "--out", str(tmp_path / "out"), "--mirror", str(mirror)])
    err = capsys.readouterr().err
    assert code == 1
    assert re.search(rf"^kdet fetch: error: .*{message}", err, re.MULTILINE), err
    assert not (tmp_path / "out" / "records.json").exists()


def test_kdet_fetch_with_a_hostile_archive(tmp_path, capsys):
    out, _ = hostile_fetch(tmp_path, "zip_dotdot")
    code = cli.main(["fetch", "raccoon", "--out", str(out), "--mirror", str(tmp_path / "mirror")])
    assert code == 1
    assert "'..' would leave the destination folder" in capsys.readouterr().err
