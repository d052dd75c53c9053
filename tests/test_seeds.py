"""Rows repeated under several seeds: the twins (:func:`kdet.experiment.seed_twins`), their
mean and spread (:func:`kdet.experiment.seed_summary`) and the opt-in stage script
``pipelines/seeds.py``."""

import importlib.util
import json
import statistics
import sys
from pathlib import Path

import keras
import pytest
import yaml

from kdet.experiment import Layout, seed_summary, seed_twins
from tests.runner_helpers import dataset_for, mlflow_run, run_id, tiny_row

PIPELINES = Path(__file__).resolve().parents[1] / "pipelines"


def rcnn_and_windows():
    """An R-CNN row and a sliding-window row that starts from it, the latter listed first."""
    return {
        "windows": {
            "family": "sliding_window",
            "dataset": "d",
            "init_from": "rcnn",
            "train": {},
            "evaluate": {},
        },
        "rcnn": {"family": "rcnn", "dataset": "d", "train": {"epochs": 3}, "evaluate": {}},
    }


def test_each_row_gets_a_twin_per_seed_that_starts_from_its_seeds_twin():
    tutorial = {"family": "rcnn", "dataset": "d", "train": {"labelling": "tutorial"}}
    rows = {**rcnn_and_windows(), "tutorial": {**tutorial, "evaluate": {}}}

    twins = seed_twins(rows, [42, 1])

    assert [(name, seed, exp.name) for name, seed, exp in twins] == [
        ("rcnn", 42, "rcnn_seed42"),  # before the row that starts from it ...
        ("rcnn", 1, "rcnn_seed1"),
        ("windows", 42, "windows_seed42"),  # ... which keeps its place before the next row
        ("windows", 1, "windows_seed1"),
        ("tutorial", 42, "tutorial_seed42"),
        ("tutorial", 1, "tutorial_seed1"),
    ]
    by_name = {exp.name: exp for _, _, exp in twins}
    assert by_name["rcnn_seed1"].train["seed"] == 1
    assert by_name["rcnn_seed1"].train["epochs"] == 3  # the row's own options stay
    assert by_name["windows_seed1"].init_from == "rcnn_seed1"
    assert by_name["windows_seed42"].init_from == "rcnn_seed42"


def test_a_row_starting_from_an_unlisted_row_keeps_it():
    rows = {"windows": rcnn_and_windows()["windows"]}

    (_, _, exp), *_ = seed_twins(rows, [7])

    assert exp.init_from == "rcnn" and exp.train["seed"] == 7


@pytest.mark.parametrize(
    "rows, seeds, message",
    [
        (rcnn_and_windows(), [], r"seeds must be distinct, at least one. Received: \[\]"),
        (rcnn_and_windows(), [1, 1], r"Received: \[1, 1\]"),
        (
            {
                "a": {"family": "rcnn", "dataset": "d", "init_from": "b"},
                "b": {"family": "rcnn", "dataset": "d", "init_from": "a"},
            },
            [1],
            r"rows \['a', 'b'\] start from each other \(init_from\) in a circle",
        ),
        (
            {"rcnn": {"family": "rcnn", "dataset": "d", "train": {"epoch": 3}, "evaluate": {}}},
            [1],
            r"seeds\.rcnn_seed1\.train\.epoch",
        ),
    ],
)
def test_bad_groups_are_refused_naming_the_problem(rows, seeds, message):
    with pytest.raises(ValueError, match=message):
        seed_twins(rows, seeds)


def test_the_summary_is_the_mean_and_sample_spread_of_the_numbers_every_seed_has():
    summary = seed_summary(
        {"r": {42: {"mAP50": 0.575, "mAP": 0.2}, 1: {"mAP50": 0.348}, 2: {"mAP50": 0.503}}}
    )["r"]

    assert summary["mean"] == {"mAP50": pytest.approx(0.4753333)}
    assert summary["std"] == {"mAP50": pytest.approx(statistics.stdev([0.575, 0.348, 0.503]))}
    assert summary["std"]["mAP50"] == pytest.approx(0.116, abs=5e-4)  # ddof 1
    assert summary["per_seed"][42] == {"mAP50": 0.575, "mAP": 0.2}
    assert seed_summary({"r": {3: {"mAP50": 0.5}}})["r"]["std"] == {"mAP50": 0.0}


def load_script():
    sys.path.insert(0, str(PIPELINES))  # the script imports its neighbour stage_timing
    try:
        spec = importlib.util.spec_from_file_location("seeds_script", PIPELINES / "seeds.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(PIPELINES))
    return module


@pytest.mark.parametrize(
    "group, message",
    [
        ({"rows": ["tiny"]}, r"seeds\.g: expected \{rows: \[NAME, \.\.\.\], seeds"),
        ({"rows": ["tiny"], "seeds": [1, "2"]}, r"seeds\.g\.seeds: \[1, '2'\] is not a list"),
        ({"rows": [], "seeds": [1]}, r"seeds\.g\.rows: \[\] is not a list of experiment names"),
        ({"rows": ["nope"], "seeds": [1]}, r"seeds\.g\.rows: no experiment 'nope' in experim"),
    ],
)
def test_the_script_refuses_a_bad_group_naming_the_parameter(group, message):
    params = {"experiments": {"tiny": {"family": "rcnn"}}, "seeds": {"g": group}}

    with pytest.raises(SystemExit, match=message):
        load_script().read_group(params, "g")


def test_the_stage_trains_and_evaluates_every_seed_and_writes_the_summary(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KDET_PROJECT_ROOT", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    dataset = dataset_for("bbox_regressor", tmp_path)
    params = {
        "experiments": {"box": tiny_row("bbox_regressor", dataset, tmp_path)},
        "seeds": {"tiny": {"rows": ["box"], "seeds": [3, 4]}},
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.setattr(sys, "argv", ["seeds.py", "tiny"])
    try:
        load_script().main()
    finally:
        keras.mixed_precision.set_global_policy("float32")

    layout = Layout(tmp_path)
    summary = json.loads((tmp_path / "data/metrics/seeds_tiny.json").read_text())
    assert summary["seeds"] == [3, 4]
    box = summary["rows"]["box"]
    each = [json.loads(layout.metrics(f"box_seed{s}").read_text())["mean_iou"] for s in (3, 4)]
    assert [box["per_seed"][s]["mean_iou"] for s in ("3", "4")] == each
    assert box["mean"]["mean_iou"] == pytest.approx(statistics.fmean(each))
    assert box["std"]["mean_iou"] == pytest.approx(statistics.stdev(each))
    assert box["per_seed"]["3"]["train_seconds"] > 0
    for seed in (3, 4):
        run = mlflow_run(run_id(tmp_path, f"box_seed{seed}"))
        assert run.data.params["train.seed"] == str(seed)
    rows = (tmp_path / "data/plots/seeds_tiny/seeds.csv").read_text().splitlines()
    assert rows[0] == "row,seed,metric,value" and len(rows) == 3
    assert rows[1].startswith("box,3,mean_iou,")
    assert (tmp_path / "data/plots/seeds_tiny/seeds.png").stat().st_size > 0
    assert (tmp_path / "data/metrics/timing/seeds_tiny.json").exists()
    assert "box: mean_iou" in capsys.readouterr().out
