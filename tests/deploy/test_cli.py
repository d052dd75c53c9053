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


@pytest.fixture(scope="module")
def box_experiment(tmp_path_factory):
    """A bbox_regressor trained and evaluated by the runner on one-box shapes:
    ``(root, name, a few test images)``."""
    from kdet import experiment
    from kdet.datasets.records import RecordSet
    from kdet.latency import latency_images
    from tests.runner_helpers import make_shapes, run, tiny_row

    root = tmp_path_factory.mktemp("project")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KDET_PROJECT_ROOT", str(root))
        make_shapes(root, one_box=True)
        run(root, "box", tiny_row("bbox_regressor", "shapes", root))
    records = RecordSet.load(experiment.Layout(root).records("shapes"))
    return root, "box", latency_images(records, count=3)


def test_export_writes_onnx_and_litert_that_answer_like_the_saved_model(
    box_experiment, monkeypatch, capsys
):
    from tests.deploy.test_export import assert_same_detections, reference

    root, name, images = box_experiment
    monkeypatch.setenv("KDET_PROJECT_ROOT", str(root))
    argv = ["export", "bbox_regressor", "--data", "shapes", "--name", name]
    assert cli.main([*argv, "--format", "onnx,litert"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    folder = root / "data" / "models" / name
    assert result["saved_model"] == str(folder / "saved_model")
    assert result["artifacts"] == {
        "onnx": str(folder / "export" / "model.onnx"),
        "litert": str(folder / "export" / "model.tflite"),
    }
    runtimes = [deploy.Runtime(path) for path in result["artifacts"].values()]
    for image in images:
        expected = reference(result["saved_model"], image)
        for runtime in runtimes:
            assert_same_detections(expected, runtime(image))


def test_int8_export_calibrates_on_training_images(box_experiment):
    """``kdet export ... --format litert --quantize int8 --representative-images 8``, minus
    the re-evaluation: boxes within 3 px (see test_export.py for the bound)."""
    from kdet import experiment
    from kdet.deploy.artifacts import export_experiment, training_images
    from tests.deploy.test_export import assert_same_detections, reference
    from tests.runner_helpers import tiny_row

    root, name, images = box_experiment
    exp = experiment.Experiment.from_row(name, tiny_row("bbox_regressor", "shapes", root))
    records = experiment.load_records(exp, experiment.Layout(root))
    drawn, again = (training_images(records, 8) for _ in range(2))
    assert len(drawn) == 8 and all(map(np.array_equal, drawn, again))  # seeded
    paths = export_experiment(
        exp, root=root, formats=["litert"], quantize="int8", representative_images=8
    )
    folder = root / "data" / "models" / name
    assert paths == {"litert": str(folder / "export" / "model_int8.tflite")}
    runtime = deploy.Runtime(paths["litert"])
    for image in images:
        expected = reference(str(folder / "saved_model"), image)
        assert_same_detections(expected, runtime(image), box_atol=3.0)


def test_export_converts_a_model_path(box_experiment, tmp_path, monkeypatch, capsys):
    from tests.deploy.test_export import assert_same_detections, reference

    root, name, images = box_experiment
    monkeypatch.setenv("KDET_PROJECT_ROOT", str(root))
    folder = root / "data" / "models" / name
    keras_file = folder / "train" / "model.keras"
    out = tmp_path / "keras.tflite"
    assert cli.main(["export", str(keras_file), "--format", "litert", "--out", str(out)]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result == {"model": str(keras_file), "artifacts": {"litert": str(out)}}
    runtime = deploy.Runtime(out)
    for image in images:
        assert_same_detections(reference(str(folder / "saved_model"), image), runtime(image))
    argv = ["export", str(folder / "saved_model"), "--format", "litert", "--quantize", "int8"]
    int8 = tmp_path / "int8.tflite"
    assert cli.main([*argv, "--out", str(int8)]) == 1
    assert "give --data DATASET to draw calibration images from" in capsys.readouterr().err
    assert cli.main([*argv, "--out", str(int8), "--data", "shapes"]) == 0
    runtime = deploy.Runtime(int8)
    for image in images:
        expected = reference(str(folder / "saved_model"), image)
        assert_same_detections(expected, runtime(image), box_atol=3.0)
    argv = ["export", str(folder / "saved_model"), "--format", "onnx,litert"]
    assert cli.main([*argv, "--out", str(tmp_path / "m.onnx")]) == 1
    assert "takes one --format and --out PATH" in capsys.readouterr().err


def test_export_of_a_family_that_cannot_convert_is_one_line(tmp_path, monkeypatch, capsys):
    """R-CNN's RoIs are cropped with CropAndResize, which LiteRT builtins lack: deploy refuses
    that format. (Training and evaluation are replaced by writing a tiny R-CNN SavedModel
    where evaluation would.)"""
    from kdet import experiment
    from tests.contract_exporters import export_rcnn
    from tests.runner_helpers import make_shapes

    make_shapes(tmp_path)

    def train(exp, *, root):
        folder = experiment.Layout(root).train_dir(exp.name)
        folder.mkdir(parents=True)
        (folder / experiment.RUN_FILE).write_text(json.dumps({"class_names": ["raccoon"]}))
        return {}

    def evaluate(exp, *, root):
        export_rcnn(experiment.Layout(root).saved_model(exp.name))
        return {}

    monkeypatch.setattr(experiment, "train", train)
    monkeypatch.setattr(experiment, "evaluate", evaluate)
    assert cli.main(["export", "rcnn", "--data", "shapes", "--format", "litert"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("kdet export: error: ")
    assert "format 'litert': not supported for R-CNN" in err and "CropAndResize" in err
    assert not (tmp_path / "data/models/rcnn_shapes/export/model.tflite").exists()


def test_export_requests_are_checked_before_any_work(tmp_path, capsys):
    cases = [
        (["rcnn", "--format", "onnx,tflite"], "formats must be distinct names among"),
        (["yolov8", "--format", "onnx", "--quantize", "int8"], "applies to format 'litert' only"),
        (["yolov8", "--out", "x.onnx"], "--out and --class-names go with a MODEL path"),
        ([str(tmp_path / "nope.keras")], "nope.keras: neither a model family"),
    ]
    for argv, message in cases:
        assert cli.main(["export", *argv]) == 1
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["export", "yolov8", "--representative-images", "0"])
    assert "'0' is not a whole number >= 1" in capsys.readouterr().err


def test_yolov8_family_deploys_its_keras_model_with_the_saved_models_nms(yolo, tmp_path):
    """What ``kdet export yolov8 ... --format onnx`` converts: the trained ``model.keras``
    (the same network) with the serving SavedModel's NMS settings; test_export.py checks
    that such an export answers like the SavedModel."""
    from kdet.families import get_family

    model, saved_model = yolo
    model.save(tmp_path / "model.keras")
    decoder = {"confidence_threshold": 0.0, "iou_threshold": 0.5, "max_detections": 7}
    source, options = get_family("yolov8").deploy_source(
        train_dir=tmp_path,
        saved_model=Path(saved_model),
        class_names=YOLO_CLASSES,
        options={"export_decoder": decoder},
    )
    assert options == {"class_names": YOLO_CLASSES, **decoder}
    batch = np.random.default_rng(0).uniform(0, 255, (1, 64, 64, 3)).astype("float32")
    expected, got = model(batch, training=False), source(batch, training=False)
    for key in ("boxes", "classes"):
        np.testing.assert_allclose(np.asarray(got[key]), np.asarray(expected[key]), atol=1e-5)
