"""``kdet predict`` and ``kdet export`` with the deploy formats, through ``kdet.cli.main``."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from kdet import cli, deploy
from tests.deploy.conftest import BOX_CLASSES, YOLO_CLASSES

FORMAT_OF = {".onnx": "onnx", ".tflite": "litert", "": "saved_model"}


def write_images(folder: Path, images) -> list[Path]:
    """The RGB arrays as lossless PNG files ``0.png``, ``1.png``, ..."""
    folder.mkdir(parents=True)
    paths = [folder / f"{i}.png" for i in range(len(images))]
    for path, image in zip(paths, images, strict=True):
        cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return paths


def cli_detections(capsys, model, inputs, out: Path) -> list[dict]:
    argv = ["predict", str(model), str(inputs), "--out", str(out)]
    assert cli.main([*argv, "--score-threshold", "0", "--no-annotated", "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    return json.loads(Path(summary["detections_file"]).read_text())


@pytest.mark.parametrize(
    ("model", "source", "name"),
    [
        ("single_box", "saved_model", "contract.onnx"),
        ("single_box", "keras", "raw.onnx"),
        ("yolo", "keras", "raw.tflite"),
        ("single_box", "keras", "raw_saved_model"),
    ],
)
def test_predict_runs_every_format_like_runtime(
    request, images, tmp_path, capsys, model, source, name
):
    keras_model, saved_model = request.getfixturevalue(model)
    options = {"class_names": YOLO_CLASSES, "confidence_threshold": 0.0}
    path = deploy.export(
        saved_model if source == "saved_model" else keras_model,
        tmp_path / name,
        format=FORMAT_OF[Path(name).suffix],
        **(options if model == "yolo" else {"class_names": BOX_CLASSES}),
    )
    paths = write_images(tmp_path / "in", images)
    entries = cli_detections(capsys, path, tmp_path / "in", tmp_path / "out")
    runtime = deploy.Runtime(path)
    assert [e["source"] for e in entries] == [str(p) for p in paths]
    for image, entry in zip(images, entries, strict=True):
        expected = runtime(image)
        got = entry["detections"]
        assert len(got) == len(expected["boxes"]) > 0
        np.testing.assert_allclose([d["box"] for d in got], expected["boxes"], atol=1.0)
        assert [d["class_id"] for d in got] == expected["classes"].tolist()
        assert [d["class_name"] for d in got] == list(expected["class_names"])


@pytest.mark.parametrize("name", ["m.onnx", "m.tflite"])
def test_predict_with_a_truncated_model_is_one_line_naming_it(
    single_box, images, tmp_path, capsys, name
):
    path = Path(deploy.export(single_box[1], tmp_path / name, format=FORMAT_OF[Path(name).suffix]))
    path.write_bytes(path.read_bytes()[:200])
    write_images(tmp_path / "in", images[:1])
    assert cli.main(["predict", str(path), str(tmp_path / "in"), "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith(f"kdet predict: error: {path}: ")
