"""The family registry, the params.yaml tables and the generated dvc.yaml stages agree."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kdet.experiment import Experiment, Layout
from kdet.families import FAMILY_MODULES, Family, family_names, get_family, merge_options

ROOT = Path(__file__).resolve().parents[1]
STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())


def names(entries):
    return [next(iter(e)) if isinstance(e, dict) else e for e in entries or []]


def fill(text, key, item):
    text = text.replace("${key}", key)
    for field, value in item.items():
        text = text.replace("${item." + field + "}", str(value))
    return text


def rows():
    for table in ("experiments", "finetune"):
        for name, row in PARAMS[table].items():
            yield table, name, row


@pytest.mark.parametrize("name", family_names())
def test_every_registered_family_implements_the_protocol(name):
    family = get_family(name)
    assert isinstance(family, Family)
    assert family.name == name
    assert family.summary
    assert set(family.defaults) == {"train", "evaluate"}
    assert family.rank_by
    assert type(family).train is not Family.train
    assert type(family).evaluate is not Family.evaluate


def test_family_names_are_the_registry_sorted():
    assert family_names() == sorted(FAMILY_MODULES)
    with pytest.raises(ValueError, match="unknown model family 'nope'.*yolov8"):
        get_family("nope")


def test_importing_the_registry_imports_no_model_code():
    code = (
        "import sys, kdet.families; "
        "print(any(m.startswith(('keras_cv', 'kdet.models')) for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_merge_options_refuses_unknown_keys_naming_them():
    assert merge_options({"a": 1, "d": {"x": 1, "y": 2}}, {"d": {"y": 3}}, "w") == {
        "a": 1,
        "d": {"x": 1, "y": 3},
    }
    with pytest.raises(ValueError, match=r"w\.d\.z: unknown option 'z' \(allowed: x, y\)"):
        merge_options({"d": {"x": 1, "y": 2}}, {"d": {"z": 0}}, "w")


@pytest.mark.parametrize(("table", "name", "row"), list(rows()), ids=lambda v: str(v)[:30])
def test_every_params_row_is_a_valid_experiment_on_a_declared_dataset(table, name, row):
    experiment = Experiment.from_row(name, row, where=table)
    assert experiment.family in family_names()
    assert experiment.dataset in PARAMS["datasets"]
    if experiment.init_from:
        assert experiment.init_from in PARAMS["experiments"]


@pytest.mark.parametrize(
    ("table", "train", "evaluate", "export", "publish"),
    [
        ("experiments", "train", "evaluate", "export", "publish"),
        ("finetune", "finetune", "evaluate_finetuned", "export_finetuned", "publish_finetuned"),
    ],
)
def test_generated_stages_write_the_layout_paths(table, train, evaluate, export, publish):
    layout = Layout(Path("."))
    for stage in (train, evaluate, export, publish):
        assert STAGES[stage]["foreach"] == "${" + table + "}"
    export_stage = STAGES[export]["do"]
    assert {"export", table + ".${key}.family", table + ".${key}.evaluate"} == set(
        export_stage["params"]
    )
    for name, row in PARAMS[table].items():

        def rel(path):
            return path.as_posix().removeprefix("./")

        train_stage, evaluate_stage = STAGES[train]["do"], STAGES[evaluate]["do"]
        assert fill(train_stage["cmd"], name, row).endswith(f"experiment.py train {name}")
        assert fill(evaluate_stage["cmd"], name, row).endswith(f"experiment.py evaluate {name}")
        train_outs = [fill(o, name, row) for o in names(train_stage["outs"])]
        assert rel(layout.train_dir(name)) in train_outs
        assert rel(layout.train_metrics(name)) in [
            fill(o, name, row) for o in names(train_stage["metrics"])
        ]
        assert rel(layout.records(row["dataset"])) in [
            fill(d, name, row) for d in train_stage["deps"]
        ]
        assert rel(layout.saved_model(name)) in [
            fill(o, name, row) for o in names(evaluate_stage["outs"])
        ]
        assert rel(layout.metrics(name)) in [
            fill(o, name, row) for o in names(evaluate_stage["metrics"])
        ]
        assert rel(layout.train_dir(name)) in [fill(d, name, row) for d in evaluate_stage["deps"]]
        assert fill(export_stage["cmd"], name, row).endswith(f"experiment.py export {name}")
        export_deps = [fill(d, name, row) for d in export_stage["deps"]]
        for path in (layout.records(row["dataset"]), layout.train_dir(name)):
            assert rel(path) in export_deps
        assert rel(layout.saved_model(name)) in export_deps
        assert [rel(layout.export_dir(name))] == [fill(o, name, row) for o in export_stage["outs"]]
        assert [rel(layout.export_metrics(name)), f"data/metrics/timing/export_{name}.json"] == [
            fill(o, name, row) for o in names(export_stage["metrics"])
        ]
        for stage, step in zip(
            (train, evaluate, export, publish),
            ("train", "evaluate", "export", "publish"),
            strict=True,
        ):  # pipelines/stage_timing.py: each stage records its wall time under its step's name
            metrics = [fill(o, name, row) for o in names(STAGES[stage]["do"]["metrics"])]
            assert f"data/metrics/timing/{step}_{name}.json" in metrics, stage
        assert [rel(layout.plots(name) / "export.csv")] == [
            fill(o, name, row) for o in names(export_stage["plots"])
        ]


def test_the_export_table_is_what_the_export_step_takes():
    import inspect

    from kdet.deploy.artifacts import check_step_request, export_step

    settings = PARAMS["export"]
    assert set(settings) <= set(inspect.signature(export_step).parameters) - {"experiment", "root"}
    check_step_request(settings["formats"], settings["quantize"])


@pytest.mark.parametrize("name", family_names())
def test_a_family_either_converts_or_says_why_not(name):
    """The export@NAME stage of every row runs: a format a family's model cannot take
    carries the reason (written instead of the artifact)."""
    refusals = get_family(name).deploy_refusals
    expected = {"rcnn": ["litert"], "fast_rcnn": ["litert"], "sliding_window": ["onnx", "litert"]}
    assert sorted(refusals) == sorted(expected.get(name, []))
    for reason in refusals.values():
        assert "not supported" in reason and "kdet.predict.Detector" in reason


def test_fetch_stage_writes_every_dataset_folder():
    fetch = STAGES["fetch"]
    assert fetch["foreach"] == "${datasets}"
    assert fetch["do"]["outs"] == ["data/raw/${key}"]
    assert "datasets.${key}" in fetch["do"]["params"]
    for name, entry in PARAMS["datasets"].items():
        assert "source" in entry, name
