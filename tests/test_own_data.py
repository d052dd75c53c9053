"""A user's own labelled images, end to end through the command line outside any project:
``kdet train FAMILY --data FOLDER`` imports a VOC, COCO or YOLO folder (with its messy
cases) into ``data/raw``, trains, and ``kdet evaluate`` reports every class's AP (tiny
models on 64x64 images, options given with ``--set``)."""

import json

import keras
import pytest

from kdet import cli
from kdet.datasets import RecordSet
from kdet.experiment import Layout
from kdet.stages import dataset_slug
from tests.datasets.messy import make_coco, make_voc, make_yolo
from tests.runner_helpers import mlflow_run, run_id, tiny_options

MAKERS = {"voc": make_voc, "coco": make_coco, "yolo": make_yolo}
# One format x family pair in the default suite, the rest marked ``slow`` (``-m slow``);
# inside a DVC project `kdet train yolov8 --data mine` runs in tests/test_dvc_pipeline.py.
CASES = [
    pytest.param("yolo", "fast_rcnn"),
    pytest.param("voc", "yolov8", marks=pytest.mark.slow),
    pytest.param("coco", "yolov8", marks=pytest.mark.slow),
    pytest.param("yolo", "yolov8", marks=pytest.mark.slow),
    pytest.param("voc", "fast_rcnn", marks=pytest.mark.slow),
    pytest.param("coco", "fast_rcnn", marks=pytest.mark.slow),
]


@pytest.fixture(autouse=True)
def float32_policy():
    yield
    keras.mixed_precision.set_global_policy("float32")


def set_arguments(options: dict, prefix: str = "") -> list[str]:
    """``{"train": {"epochs": 2}}`` -> ``["--set", "train.epochs=2"]`` (values as YAML)."""
    arguments = []
    for key, value in options.items():
        if isinstance(value, dict):
            arguments += set_arguments(value, f"{prefix}{key}.")
        else:
            arguments += ["--set", f"{prefix}{key}={json.dumps(value)}"]
    return arguments


def kdet(capsys, *argv) -> dict:
    """Run ``kdet ARGV`` in this process; its one JSON line of stdout."""
    assert cli.main(list(argv)) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.mark.parametrize(("fmt", "family"), CASES)
def test_own_folder_trains_and_evaluates_through_the_command_line(
    tmp_path, monkeypatch, capsys, fmt, family
):
    source = MAKERS[fmt](tmp_path / "my_labels")
    monkeypatch.chdir(tmp_path)  # no dvc.yaml here: the runner runs directly
    options = tiny_options(family, tmp_path)
    options["train"]["epochs"] = 2
    sets = set_arguments(options)

    trained = kdet(capsys, "train", family, "--data", str(source), *sets)
    dataset = dataset_slug(str(source))  # the folder's (or data.yaml's folder's) name
    name = f"{family}_{dataset}"
    assert (trained["experiment"], trained["dataset"]) == (name, dataset)
    assert trained["train"]["train_seconds"] > 0, trained
    records = RecordSet.load(Layout(tmp_path).records(dataset))
    assert {"train", "test"} <= {r.split for r in records.records}

    evaluated = kdet(capsys, "evaluate", family, "--data", str(source), *sets)
    assert "train" not in evaluated  # trained already: evaluate reuses the model
    metrics = evaluated["metrics"]
    assert 0.0 <= metrics["mAP50"] <= 1.0
    # every class with a test box gets its AP (classes without one have no AP to report)
    tested = {records.class_names[c] for r in records.split("test").records for c in r.classes}
    assert {"rectangle", "ellipse"} <= tested
    expected = {f"{kind}/{name}" for name in tested for kind in ("AP50", "AP")}
    assert expected <= set(metrics), sorted(metrics)
    assert expected <= set(mlflow_run(run_id(tmp_path, name)).data.metrics)
    assert (Layout(tmp_path).saved_model(name) / "saved_model.pb").exists()
