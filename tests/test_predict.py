import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from kdet import cli
from kdet.errors import KdetError
from kdet.predict import Detector, predict, predict_webcam
from tests.mirror_images import raccoon_images
from tests.toy_detector import (
    WHOLE_IMAGE_SCORE,
    export_toy_detector,
    export_toy_proposal_detector,
)


@pytest.fixture(scope="module")
def toy_model(tmp_path_factory):
    return export_toy_detector(tmp_path_factory.mktemp("toy") / "saved_model")


@pytest.fixture(scope="module")
def detector(toy_model):
    return Detector(toy_model)


def test_folder_of_mirror_images_with_bad_inputs(detector, tmp_path):
    images = raccoon_images(tmp_path / "in", 3)
    (tmp_path / "in" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (tmp_path / "in" / "notes.txt").write_text("not an image: folders skip it")
    missing = tmp_path / "missing.jpg"
    summary = predict(
        detector,
        [tmp_path / "in", missing],
        out_dir=tmp_path / "out",
        score_threshold=0.5,
        progress=False,
    )
    assert summary["images"] == 3 and summary["detections"] == 3
    assert len(summary["failed"]) == 2
    assert "broken.jpg: not a readable image" in summary["failed"][0]
    assert f"{missing}: no such file" in summary["failed"][1]
    assert summary["images_per_s"] > 0
    entries = json.loads((tmp_path / "out" / "detections.json").read_text())
    for image_path, entry in zip(images, entries, strict=True):
        height, width = cv2.imread(str(image_path)).shape[:2]
        assert entry["source"] == str(image_path)
        assert (entry["width"], entry["height"]) == (width, height)
        [detection] = entry["detections"]  # the 0.3 "cat" box is under the threshold
        assert detection["box"] == [0, 0, width, height]
        assert detection["class_name"] == "dog" and detection["class_id"] == 1
        assert detection["score"] == pytest.approx(WHOLE_IMAGE_SCORE)
        annotated = cv2.imread(str(tmp_path / "out" / image_path.name))
        assert annotated.shape[:2] == (height, width)


def test_csv_rows_and_same_stem_names(detector, tmp_path):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        cv2.imwrite(str(tmp_path / folder / "x.png"), np.zeros((20, 40, 3), np.uint8))
    summary = predict(
        detector,
        [tmp_path / "a", tmp_path / "b"],
        out_dir=tmp_path / "out",
        score_threshold=0.0,
        detections_format="csv",
        progress=False,
    )
    with open(summary["detections_file"], newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 4
    assert {(r["class_name"], float(r["x2"]), float(r["y2"])) for r in rows} == {
        ("dog", 40.0, 20.0),
        ("cat", 20.0, 10.0),
    }
    assert (tmp_path / "out" / "x.jpg").exists() and (tmp_path / "out" / "x_1.jpg").exists()


def make_video(path, frames, size=(96, 64), fps=5.0, fourcc="mp4v"):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, size)
    for frame in frames:
        writer.write(cv2.resize(cv2.imread(str(frame)), size))
    writer.release()


def test_video_from_mirror_images_gives_an_annotated_video(detector, tmp_path):
    frames = raccoon_images(tmp_path / "frames", 5)
    make_video(tmp_path / "clip.mp4", frames)
    summary = predict(detector, [tmp_path / "clip.mp4"], out_dir=tmp_path / "out", progress=False)
    assert (summary["videos"], summary["frames"], summary["failed"]) == (1, 5, [])
    assert summary["fps"] > 0
    capture = cv2.VideoCapture(str(tmp_path / "out" / "clip.mp4"))
    assert capture.get(cv2.CAP_PROP_FRAME_COUNT) == 5
    ok, frame = capture.read()
    assert ok and frame.shape == (64, 96, 3)
    entries = json.loads((tmp_path / "out" / "detections.json").read_text())
    assert [e["frame"] for e in entries] == [0, 1, 2, 3, 4]
    assert all(e["detections"][0]["box"] == [0, 0, 96, 64] for e in entries)


def test_video_that_fails_mid_stream_keeps_its_frames_and_is_reported(detector, tmp_path):
    frames = raccoon_images(tmp_path / "frames", 8)
    make_video(tmp_path / "whole.avi", frames, fourcc="MJPG")  # frames stored one by one
    data = (tmp_path / "whole.avi").read_bytes()
    (tmp_path / "cut.avi").write_bytes(data[: len(data) // 2])  # an interrupted copy
    summary = predict(
        detector,
        [tmp_path / "cut.avi", tmp_path / "whole.avi"],
        out_dir=tmp_path / "out",
        progress=False,
    )
    assert summary["videos"] == 2
    kept = summary["frames"] - 8
    assert 0 < kept < 8
    assert summary["failed"] == [
        f"{tmp_path / 'cut.avi'}: the video stopped at frame {kept} of the 8 its header gives "
        f"(truncated or corrupt from there); the {kept} frames before it were kept"
    ]
    entries = json.loads((tmp_path / "out" / "detections.json").read_text())
    assert [e["frame"] for e in entries if e["source"].endswith("cut.avi")] == list(range(kept))
    capture = cv2.VideoCapture(str(tmp_path / "out" / "cut.mp4"))
    assert capture.get(cv2.CAP_PROP_FRAME_COUNT) == kept


def test_unreadable_video_is_reported(detector, tmp_path):
    (tmp_path / "bad.mp4").write_bytes(b"no video here")
    summary = predict(detector, [tmp_path / "bad.mp4"], out_dir=tmp_path / "out", progress=False)
    assert summary["videos"] == 0
    assert summary["failed"][0].startswith(f"{tmp_path / 'bad.mp4'}: ")


def test_missing_camera_is_a_clear_error(detector, tmp_path):
    with pytest.raises(KdetError, match="cannot open camera 97"):
        predict_webcam(detector, 97, out_dir=tmp_path)


def test_not_a_saved_model_is_a_clear_error(tmp_path):
    with pytest.raises(KdetError, match="no saved_model.pb"):
        Detector(tmp_path)


def test_cli_predict_prints_summary_and_flags_failures(toy_model, tmp_path, capsys):
    raccoon_images(tmp_path / "in", 2)
    argv = ["predict", toy_model, str(tmp_path / "in")]
    options = ["--out", str(tmp_path / "out"), "--quiet"]
    assert cli.main([*argv, *options, "--format", "csv"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["images"] == 2 and summary["detections_file"].endswith("detections.csv")
    assert cli.main([*argv, str(tmp_path / "nope.jpg"), *options]) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out.strip().splitlines()[-1])["images"] == 2
    assert "nope.jpg: no such file or folder" in captured.err


def test_proposal_taking_model_gets_selective_search_proposals(tmp_path):
    pytest.importorskip("kdet.models.rcnn.proposals", reason="the R-CNN family is not merged")
    [image] = raccoon_images(tmp_path / "in", 1)
    height, width = cv2.imread(str(image)).shape[:2]
    detector = Detector(export_toy_proposal_detector(tmp_path / "model"))
    assert detector.takes_proposals
    summary = predict(detector, [image], out_dir=tmp_path / "out", progress=False)
    [entry] = json.loads(Path(summary["detections_file"]).read_text())
    [detection] = entry["detections"]
    x1, y1, x2, y2 = detection["box"]
    assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
    assert detection["class_name"] == "cat"


def test_a_folder_without_the_serving_contract_is_refused_naming_it(tmp_path):
    import tensorflow as tf

    from kdet.detector import load_contract

    with pytest.raises(KdetError, match=r"empty.*not a SavedModel folder"):
        load_contract(tmp_path / "empty")
    tf.saved_model.save(tf.Module(), str(tmp_path / "plain"))
    with pytest.raises(KdetError, match=r"plain.*lacks the 'detect_image' signature"):
        load_contract(tmp_path / "plain")
