"""The ``export@NAME`` stage (:func:`kdet.deploy.artifacts.export_step`) on tiny trained
experiments: artifacts written as one folder, logged to the row's MLflow run, and scored
like the SavedModel they come from."""

import csv
import importlib.util
import json
import sys
from pathlib import Path

import mlflow
import pytest

from kdet import deploy, experiment, tracking
from kdet.deploy import artifacts
from kdet.deploy.artifacts import EXPORT_FILE, PLOT_COLUMNS, PLOT_FILE, export_step
from kdet.experiment import Experiment, Layout
from tests.runner_helpers import make_shapes, run, run_id, tiny_row

SCRIPT = Path(__file__).resolve().parents[2] / "pipelines" / "experiment.py"
TIMING = {"threads": 1, "warmup": 1, "repeats": 3}


def logged_files(run_id_: str) -> set[str]:
    tracking.configure()
    return {f.path for f in mlflow.MlflowClient().list_artifacts(run_id_, "export")}


def test_export_step_writes_scores_and_logs_every_artifact(tmp_path, monkeypatch):
    """A tiny single-box model (8 epochs, so some boxes overlap their truth by IoU >= 0.5):
    ONNX and LiteRT files beside the SavedModel, each with the SavedModel's mAP."""
    make_shapes(tmp_path, "shapes_one", one_box=True, num_images=40)
    row = tiny_row("bbox_regressor", "shapes_one", tmp_path)
    row["train"]["epochs"] = 8
    exp, _, _ = run(tmp_path, "box", row)
    layout = Layout(tmp_path)

    metrics = export_step(exp, root=tmp_path, formats=["onnx", "litert"], **TIMING)

    folder = layout.export_dir("box")
    assert sorted(p.name for p in folder.iterdir()) == [
        EXPORT_FILE,
        "model.classes.json",
        "model.onnx",
        "model.tflite",
    ]
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no staging
    assert all(p.stat().st_mode & 0o044 == 0o044 for p in folder.iterdir())  # others read
    assert json.loads((folder / EXPORT_FILE).read_text()) == metrics
    assert json.loads(layout.export_metrics("box").read_text()) == metrics
    assert metrics["exported"] is True and metrics["test_images"] == 8
    scores = metrics["artifacts"]
    assert list(scores) == ["saved_model", "onnx", "litert"]
    assert scores["onnx"]["file"] == "data/models/box/export/model.onnx"
    assert scores["saved_model"]["file"] == "data/models/box/saved_model"
    reference = scores["saved_model"]
    assert reference["mAP50"] > 0  # the comparison below is not 0 == 0
    for label, row_ in scores.items():
        assert row_["mAP50"] == pytest.approx(reference["mAP50"], abs=0.005), label
        assert row_["mAP"] == pytest.approx(reference["mAP"], abs=0.005), label
        assert 0 < row_["latency_ms"] <= row_["latency_p90_ms"], label
        assert row_["size_kib"] > 0, label
    assert scores["onnx"]["threads"] == "intra=1"
    assert scores["saved_model"]["threads"].startswith("tf intra=")
    with open(layout.plots("box") / PLOT_FILE, newline="") as f:
        plotted = list(csv.DictReader(f))
    assert [r["artifact"] for r in plotted] == list(scores)
    assert list(plotted[0]) == list(PLOT_COLUMNS)

    # the training's MLflow run shows the folder and the numbers
    run_id_ = run_id(tmp_path, "box")
    assert {f"export/{p.name}" for p in folder.iterdir()} <= logged_files(run_id_)
    logged = mlflow.get_run(run_id_).data.metrics
    assert logged["export.litert.mAP50"] == pytest.approx(scores["litert"]["mAP50"])
    assert logged["export.onnx.latency_ms"] == pytest.approx(scores["onnx"]["latency_ms"])

    # a failing export leaves the previous folder and metrics as they were
    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    def fail(*args, **kwargs):
        raise RuntimeError("scoring failed")

    monkeypatch.setattr(artifacts, "score_artifacts", fail)
    with pytest.raises(RuntimeError, match="scoring failed"):
        export_step(exp, root=tmp_path, formats=["onnx"], **TIMING)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert json.loads(layout.export_metrics("box").read_text()) == metrics
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]


def fake_evaluated(root: Path, name: str, family: str, export) -> Experiment:
    """An experiment whose training and evaluation are replaced by an MLflow run and a tiny
    untrained SavedModel written by ``export(path)``."""
    layout = Layout(root)
    exp = Experiment.from_row(name, tiny_row(family, "shapes", root))
    class_names = export(layout.saved_model(name))
    with tracking.start_run("shapes", run_name=name) as started:
        pass
    layout.train_dir(name).mkdir(parents=True)
    info = {"run_id": started.info.run_id, "class_names": class_names}
    (layout.train_dir(name) / experiment.RUN_FILE).write_text(json.dumps(info))
    return exp


def test_a_family_that_cannot_convert_records_why(tmp_path):
    """The sliding window converts to nothing: no artifact, no failure, the reason written
    where the artifacts and the metrics would be and logged to the run."""
    from tests.contract_exporters import export_sliding_window

    layout = Layout(tmp_path)
    exp = fake_evaluated(tmp_path, "sw_x", "sliding_window", export_sliding_window)

    metrics = export_step(exp, root=tmp_path, formats=["onnx", "litert"], **TIMING)

    assert metrics["exported"] is False
    assert metrics["reason"].startswith("onnx: not supported for the sliding-window detector")
    folder = layout.export_dir("sw_x")
    assert [p.name for p in folder.iterdir()] == [EXPORT_FILE]
    assert json.loads((folder / EXPORT_FILE).read_text()) == metrics
    assert json.loads(layout.export_metrics("sw_x").read_text()) == metrics
    assert (layout.plots("sw_x") / PLOT_FILE).read_text().strip() == ",".join(PLOT_COLUMNS)
    assert logged_files(run_id(tmp_path, "sw_x")) == {f"export/{EXPORT_FILE}"}
    # kdet export (the command line) refuses the same family before any conversion
    with pytest.raises(artifacts.DeployError, match="format 'onnx': not supported"):
        artifacts.export_experiment(exp, root=tmp_path, formats=["onnx"])


@pytest.mark.slow  # 43 s here: selective search over 12 images, twice
def test_rcnn_exports_onnx_scored_with_its_proposals_and_refuses_litert(tmp_path):
    """R-CNN: the ONNX file (selective search moved to the runtime, with the row's
    proposal settings) scores as the SavedModel does and is logged as a pyfunc model;
    LiteRT is refused with the reason, the rest of the stage goes on."""
    from tests.contract_exporters import export_rcnn

    make_shapes(tmp_path, "shapes", num_images=12)
    exp = fake_evaluated(tmp_path, "rcnn_x", "rcnn", export_rcnn)
    exp.train["proposals"]["mode"] = "single"

    metrics = export_step(exp, root=tmp_path, formats=["onnx", "litert"], **TIMING)

    assert metrics["exported"] is True
    assert list(metrics["refused"]) == ["litert"]
    assert "CropAndResize" in metrics["refused"]["litert"]
    scores = metrics["artifacts"]
    assert list(scores) == ["saved_model", "onnx"]
    assert scores["onnx"]["mAP50"] == pytest.approx(scores["saved_model"]["mAP50"], abs=0.005)
    onnx_file = Path(tmp_path) / scores["onnx"]["file"]
    settings = exp.train["proposals"]
    assert deploy.Runtime(onnx_file).metadata["proposals"] == {
        "mode": "single",
        "max_side": settings["max_side"],
        "seed": settings["seed"],
    }
    model = mlflow.pyfunc.load_model(f"runs:/{run_id(tmp_path, 'rcnn_x')}/detector_onnx")
    assert model.metadata.signature.inputs.input_names() == ["image"]
    with pytest.raises(artifacts.DeployError, match="format 'litert': not supported for R-CNN"):
        artifacts.export_experiment(exp, root=tmp_path, formats=["litert"])


@pytest.mark.parametrize(
    ("formats", "quantize", "message"),
    [
        (["saved_model"], [], "export.formats: distinct names among onnx, litert"),
        ("onnx", [], "export.formats"),
        (["onnx"], ["none"], "export.quantize: distinct names among float16, int8"),
        (["onnx"], ["int8", "int8"], "export.quantize"),
    ],
)
def test_bad_export_settings_are_refused_before_any_work(tmp_path, formats, quantize, message):
    exp = Experiment.from_row("y", tiny_row("yolov8", "shapes", tmp_path))
    with pytest.raises(ValueError, match=message):
        export_step(exp, root=tmp_path, formats=formats, quantize=quantize)


def test_the_stage_script_passes_the_export_table(tmp_path, monkeypatch, capsys):
    """``python pipelines/experiment.py export NAME`` calls export_step with the row and
    ``params.yaml: export``."""
    params = {
        "experiments": {"y": tiny_row("yolov8", "shapes", tmp_path)},
        "export": {"formats": ["onnx"], "quantize": ["int8"], "threads": 2},
    }
    (tmp_path / "params.yaml").write_text(json.dumps(params))
    calls = []

    def export_step(exp, **settings):
        calls.append((exp.name, settings))
        return {"exported": True}

    monkeypatch.setattr(artifacts, "export_step", export_step)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["experiment.py", "export", "y"])
    monkeypatch.syspath_prepend(str(SCRIPT.parent))  # as `python pipelines/...` has it
    spec = importlib.util.spec_from_file_location("experiment_stage", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main()
    assert calls == [("y", params["export"])]
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == {"exported": True}
