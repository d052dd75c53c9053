"""DVC experiments as users run them, on kdet's real single-box stages in a throwaway project.

``dvc exp run -S`` trains and evaluates with overridden params, ``dvc exp show`` lists the
numbers the stages logged to MLflow under the same names, and ``dvc plots diff`` draws the
training curves of two experiments (the per-epoch values MLflow holds).
"""

import copy
import json
import math
import shutil
import subprocess
from pathlib import Path

import mlflow
import pytest
import yaml

from kdet.families import family_names, get_family
from tests.models.single_box.conftest import make_single_box_records
from tests.runner_helpers import tiny_row
from tests.scale.processes import REPO_ROOT, VENV_BIN, project_env

# Slow: dvc exp run of two experiments in a throwaway project (a few minutes); the default
# suite runs the generated stages with dvc repro (tests/test_dvc_pipeline.py).
pytestmark = pytest.mark.slow

DVC = str(VENV_BIN / "dvc")
NAME = "bbox_regressor_toy"  # the experiment row (params.yaml experiments.NAME)
DATASET = "caltech101"
STAGES = ("train", "evaluate")
HISTORY = f"data/plots/{NAME}/history.csv"
# Each run sets all it changes: `dvc exp run` starts from the workspace, where the previous
# experiment's params were applied.
EXPERIMENTS = {
    "two-epochs": ["train.epochs=2"],
    "lr-0.01": ["train.epochs=1", "train.model.learning_rate=0.01"],
}


def run(command, cwd: Path, env: dict, timeout: float = 300) -> str:
    """Run a command to completion; fail with its output."""
    result = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{command} exited with {result.returncode}:\n{output}"
    return result.stdout


def write_project(root: Path, params: dict, stages=STAGES, copy_kdet: bool = True) -> None:
    """The project's real ``dvc.yaml`` stages ``stages`` (generated from ``params``' tables),
    ``pipelines/`` scripts and ``.gitignore``, with ``params`` as ``params.yaml``; ``kdet``
    copied in (else importable through ``PYTHONPATH``)."""
    if copy_kdet:
        shutil.copytree(
            REPO_ROOT / "kdet", root / "kdet", ignore=shutil.ignore_patterns("__pycache__")
        )
    (root / "pipelines").mkdir()
    for script in ("experiment.py", "fetch.py", "stage_timing.py"):
        shutil.copy(REPO_ROOT / "pipelines" / script, root / "pipelines" / script)
    dvc_yaml = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())
    stages = {name: copy.deepcopy(dvc_yaml["stages"][name]) for name in stages}
    if not copy_kdet:  # kdet comes from PYTHONPATH: depend on the scripts only
        for stage in stages.values():
            stage["do"]["deps"] = [d for d in stage["do"]["deps"] if not d.startswith("kdet")]
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}, sort_keys=False))
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    shutil.copy(REPO_ROOT / ".gitignore", root / ".gitignore")  # data/, mlflow.db, ...


def make_project(root: Path) -> None:
    """kdet, the real train/evaluate stages of one tiny bbox_regressor row and 24 toy
    images."""
    row = tiny_row("bbox_regressor", DATASET, root)
    row["train"]["classes"] = ["red"]
    row["train"]["feature_cache_dir"] = "data/features"  # relative: the stage runs in root
    write_project(root, {"experiments": {NAME: row}})
    records = root / "data" / "raw" / DATASET
    records.mkdir(parents=True)
    make_single_box_records(records)


def init_git_dvc(project: Path, env: dict) -> None:
    run(["git", "init", "-q", "-b", "main"], project, env)
    run([DVC, "init", "-q"], project, env)
    run(["git", "add", "-A"], project, env)
    run(["git", "commit", "-qm", "tiny kdet project"], project, env)


@pytest.fixture(scope="module")
def experiments(tmp_path_factory):
    """A git + DVC project after two ``dvc exp run -S ...`` of both stages."""
    root = tmp_path_factory.mktemp("dvc_experiments")
    project = root / "project"
    project.mkdir()
    make_project(project)
    env = project_env(project, root)
    init_git_dvc(project, env)
    for name, overrides in EXPERIMENTS.items():
        sets = [arg for value in overrides for arg in ("-S", f"++experiments.{NAME}.{value}")]
        run([DVC, "exp", "run", "-n", name, *sets], project, env)
    return project, env


def experiment_rows(project: Path, env: dict) -> dict[str, dict]:
    """``{experiment name: its data}`` from ``dvc exp show --json``."""
    rows = {}
    for baseline in json.loads(run([DVC, "exp", "show", "--json"], project, env)):
        for experiment in baseline.get("experiments") or []:
            for rev in experiment["revs"]:
                rows[rev["name"]] = rev["data"]
    return rows


def numeric_leaves(values: dict, prefix: str = "") -> dict[str, float]:
    """Nested metrics flattened with dots, as ``dvc metrics show`` prints them."""
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(numeric_leaves(value, f"{prefix}{key}."))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            flat[f"{prefix}{key}"] = value
    return flat


def mlflow_client(project: Path) -> mlflow.MlflowClient:
    """A client of the project's own store (where its stages logged)."""
    return mlflow.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")


def mlflow_run(project: Path, name: str):
    """The MLflow run a DVC experiment's stages logged (tagged with the experiment name)."""
    client = mlflow_client(project)
    runs = client.search_runs(
        [client.get_experiment_by_name(DATASET).experiment_id],
        filter_string=f"tags.dvc_experiment = '{name}'",
    )
    assert len(runs) == 1, f"{len(runs)} MLflow runs tagged dvc_experiment={name}"
    return runs[0]


def test_exp_show_lists_the_metrics_mlflow_logged(experiments):
    project, env = experiments
    rows = experiment_rows(project, env)
    assert set(EXPERIMENTS) <= set(rows), rows.keys()
    for name in EXPERIMENTS:
        data = rows[name]
        params = data["params"]["params.yaml"]["data"]["experiments"][NAME]
        mlflow_data = mlflow_run(project, name).data
        assert params["train"]["epochs"] == (2 if name == "two-epochs" else 1)
        assert mlflow_data.params["train.epochs"] == str(params["train"]["epochs"])
        learning_rate = params["train"]["model"].get("learning_rate", 0.001)
        assert mlflow_data.params["train.model.learning_rate"] == str(learning_rate)

        shown = {}
        for path in (f"data/metrics/{NAME}.json", f"data/metrics/{NAME}_train.json"):
            assert "data" in data["metrics"][path], data["metrics"][path]  # e.g. not in Git
            shown.update(numeric_leaves(data["metrics"][path]["data"]))
        assert {"mean_iou", "baseline_mean_iou", "latency_ms", "loss", "val_loss"} <= set(shown)
        assert set(shown) == set(mlflow_data.metrics)
        for metric, value in shown.items():
            assert math.isclose(mlflow_data.metrics[metric], value, rel_tol=1e-6), metric


def test_plots_diff_draws_the_training_curves_of_both_experiments(experiments):
    project, env = experiments
    first, second = EXPERIMENTS
    output = json.loads(run([DVC, "plots", "diff", first, second, "--json"], project, env))
    assert not output.get("errors"), output["errors"]
    plots = output["data"][HISTORY]
    assert len(plots) == 1
    assert set(plots[0]["revisions"]) == {first, second}
    rows = plots[0]["content"]["data"]["values"]
    client = mlflow_client(project)
    for name in (first, second):
        run_id = mlflow_run(project, name).info.run_id
        # one y column (loss): DVC names no "field" in the rows and keeps the y column's
        # own name; several: "field" names the column, "dvc_inferred_y_value" holds the value
        for curve in {row.get("field", "loss") for row in rows if row["rev"] == name}:
            drawn = sorted(
                (int(row["epoch"]), float(row.get("dvc_inferred_y_value", row.get(curve))))
                for row in rows
                if row["rev"] == name and row.get("field", "loss") == curve
            )
            logged = sorted((m.step, m.value) for m in client.get_metric_history(run_id, curve))
            assert [epoch for epoch, _ in drawn] == [step for step, _ in logged], (name, curve)
            for (_, y), (_, value) in zip(drawn, logged, strict=True):
                assert math.isclose(y, value, rel_tol=1e-6), (name, curve)
    epochs = {name: {row["epoch"] for row in rows if row["rev"] == name} for name in EXPERIMENTS}
    assert (len(epochs[first]), len(epochs[second])) == (2, 1)


def test_every_training_curve_is_a_plot_against_epochs():
    dvc_yaml = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())
    for stage in ("train", "finetune"):
        do = dvc_yaml["stages"][stage]["do"]
        outs = [next(iter(out)) if isinstance(out, dict) else out for out in do["outs"]]
        plots = {path: props for p in do["plots"] for path, props in p.items()}
        assert list(plots) == ["data/plots/${key}/history.csv"], (stage, plots)
        assert not set(plots) & set(outs), "a stage plot is an output: DVC refuses it twice"
        chart = plots["data/plots/${key}/history.csv"]
        assert chart["x"] == "epoch" and chart["y"] == "loss", (stage, chart)
    for name in family_names():
        assert "loss" in get_family(name).history_columns, name
