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

from kdet.families import FAMILIES
from tests.models.single_box.conftest import make_single_box_records
from tests.scale.processes import REPO_ROOT, VENV_BIN, project_env

DVC = str(VENV_BIN / "dvc")
GROUP = "bbox_regressor"
STAGES = (f"train_{GROUP}", f"evaluate_{GROUP}")
HISTORY = f"data/plots/{GROUP}/history.csv"
# The real params group, shrunk: 64x64 inputs, a tiny head, one epoch unless overridden.
TINY = {
    "classes": ["red"],
    "model": {"box_units": [8]},
    "train": {"image_size": [64, 64], "epochs": 1, "batch_size": 8, "augment": False},
}
# Each run sets all it changes: `dvc exp run` starts from the workspace, where the previous
# experiment's params were applied.
EXPERIMENTS = {
    "two-epochs": ["train.epochs=2"],
    "lr-0.01": ["train.epochs=1", "model.learning_rate=0.01"],
}


def run(command, cwd: Path, env: dict, timeout: float = 300) -> str:
    """Run a command to completion; fail with its output."""
    result = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{command} exited with {result.returncode}:\n{output}"
    return result.stdout


def merged(base: dict, changes: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in changes.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) else value
    return out


def make_project(root: Path) -> None:
    """kdet, the real train/evaluate scripts, stages and .gitignore, tiny params and 24 toy
    images."""
    shutil.copytree(REPO_ROOT / "kdet", root / "kdet", ignore=shutil.ignore_patterns("__pycache__"))
    (root / "pipelines").mkdir()
    for script in ("train_single_box.py", "evaluate_single_box.py"):
        shutil.copy(REPO_ROOT / "pipelines" / script, root / "pipelines" / script)
    dvc_yaml = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())
    plots = [entry for entry in dvc_yaml["plots"] if HISTORY in entry]
    stages = {name: dvc_yaml["stages"][name] for name in STAGES}
    (root / "dvc.yaml").write_text(
        yaml.safe_dump({"stages": stages, "plots": plots}, sort_keys=False)
    )
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())[GROUP]
    (root / "params.yaml").write_text(yaml.safe_dump({GROUP: merged(params, TINY)}))
    records = root / "data" / "raw" / "caltech101"
    records.mkdir(parents=True)
    make_single_box_records(records)
    shutil.copy(REPO_ROOT / ".gitignore", root / ".gitignore")  # data/, mlflow.db, ...


@pytest.fixture(scope="module")
def experiments(tmp_path_factory):
    """A git + DVC project after two ``dvc exp run -S ...`` of both stages."""
    root = tmp_path_factory.mktemp("dvc_experiments")
    project = root / "project"
    project.mkdir()
    make_project(project)
    env = project_env(project, root)
    run(["git", "init", "-q", "-b", "main"], project, env)
    run([DVC, "init", "-q"], project, env)
    run(["git", "add", "-A"], project, env)
    run(["git", "commit", "-qm", "tiny kdet project"], project, env)
    for name, overrides in EXPERIMENTS.items():
        sets = [arg for value in overrides for arg in ("-S", f"{GROUP}.{value}")]
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
        [client.get_experiment_by_name("caltech101").experiment_id],
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
        params = data["params"]["params.yaml"]["data"][GROUP]
        mlflow_data = mlflow_run(project, name).data
        assert params["train"]["epochs"] == (2 if name == "two-epochs" else 1)
        assert mlflow_data.params["train.epochs"] == str(params["train"]["epochs"])
        assert mlflow_data.params["model.learning_rate"] == str(params["model"]["learning_rate"])

        shown = {}
        for path in (f"data/metrics/{GROUP}.json", f"data/metrics/{GROUP}_train.json"):
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
        for curve in ("loss", "val_loss"):
            drawn = sorted(
                (int(row["epoch"]), float(row["dvc_inferred_y_value"]))
                for row in rows
                if row["rev"] == name and row["field"] == curve
            )
            logged = sorted((m.step, m.value) for m in client.get_metric_history(run_id, curve))
            assert [epoch for epoch, _ in drawn] == [step for step, _ in logged], (name, curve)
            for (_, y), (_, value) in zip(drawn, logged, strict=True):
                assert math.isclose(y, value, rel_tol=1e-6), (name, curve)
    epochs = {name: {row["epoch"] for row in rows if row["rev"] == name} for name in EXPERIMENTS}
    assert (len(epochs[first]), len(epochs[second])) == (2, 1)


def test_every_family_training_curve_is_a_plot_against_epochs():
    dvc_yaml = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())
    charts = {path: props for entry in dvc_yaml["plots"] for path, props in entry.items()}
    for name, family in FAMILIES.items():
        for dataset in family.datasets:
            stage = dvc_yaml["stages"][family.stage("train", dataset)]
            outs = [next(iter(out)) if isinstance(out, dict) else out for out in stage["outs"]]
            curves = [path for path in outs if path.endswith("history.csv")]
            assert len(curves) == 1, (name, dataset, outs)
            chart = charts[curves[0]]
            assert chart["x"] == "epoch" and "loss" in chart["y"], (name, chart)
            stage_plots = [
                next(iter(p)) if isinstance(p, dict) else p for p in stage.get("plots", [])
            ]
            assert curves[0] not in stage_plots, "drawn twice: as a stage plot and a chart"
