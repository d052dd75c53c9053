"""Experiments started at once into one ``mlflow.db`` lose nothing.

Processes released together on a new sqlite store all log their runs (MLflow creates the
tables on first use, and two processes doing that at once used to fail); publishes that
interleave leave ``champion`` on the best version; and two ``kdet evaluate && kdet
publish`` command lines started at once (slow) deliver every run, metric, artifact and
registered version. Correct code passes whatever order the processes run in.
"""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import time
from pathlib import Path
from urllib.parse import urlparse

import mlflow
import pytest

from kdet import tracking
from tests.runner_helpers import make_shapes
from tests.scale.processes import REPO_ROOT, VENV_BIN, child_env, kill, project_env

DEADLINE_S = 1200  # a bound on the slow test's wait: a busy machine is slow, never wrong
STEPS = 5


def _log_one_run(uri: str, barrier, index: int) -> None:
    """A child process: wait for the others, then log one run with ``STEPS`` losses."""
    barrier.wait(timeout=120)
    with tracking.start_run(
        "concurrent", run_name=f"run{index}", params={"index": index}, tracking_uri=uri
    ):
        for step in range(STEPS):
            tracking.log_metrics({"loss": 1.0 / (step + 1), "index": index}, step=step)


def test_processes_released_together_on_a_new_store_all_log_their_runs(tmp_path):
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    count = 4
    context = multiprocessing.get_context("fork")  # the children need no second TF import
    barrier = context.Barrier(count)
    children = [context.Process(target=_log_one_run, args=(uri, barrier, i)) for i in range(count)]
    for child in children:
        child.start()
    for child in children:
        child.join(timeout=300)
    assert [child.exitcode for child in children] == [0] * count

    client = mlflow.MlflowClient(uri)
    (experiment,) = [e for e in client.search_experiments() if e.name == "concurrent"]
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(run.data.params["index"] for run in runs) == [str(i) for i in range(count)]
    for run in runs:
        assert run.info.status == "FINISHED"
        history = client.get_metric_history(run.info.run_id, "loss")
        assert sorted(m.step for m in history) == list(range(STEPS))


def test_champion_ends_on_the_best_version_when_two_publishes_interleave(tmp_path, monkeypatch):
    """Publisher A reads the versions (only its own, worse one) and moves ``champion``;
    publisher B registers a better version and promotes it between A's read and A's move."""
    tracking.configure(f"sqlite:///{tmp_path / 'mlflow.db'}")
    client = mlflow.MlflowClient()
    client.create_registered_model("shapes")

    def register(score: float) -> str:
        tags = {f"{tracking.METRIC_TAG_PREFIX}mAP50": repr(score)}
        return str(client.create_model_version("shapes", str(tmp_path), tags=tags).version)

    worse = register(0.2)
    moves = []
    original = mlflow.MlflowClient.set_registered_model_alias

    def interleaved(self, name, alias, version):
        if not moves:  # B runs to completion inside A's read-then-move
            moves.append(("B", register(0.9)))
            original(self, name, alias, moves[-1][1])
        moves.append(("A", str(version)))
        original(self, name, alias, version)

    monkeypatch.setattr(mlflow.MlflowClient, "set_registered_model_alias", interleaved)
    best = tracking.promote_best("shapes", "mAP50")
    better = moves[0][1]
    assert moves[1] == ("A", worse)  # A did move the alias to its stale pick ...
    assert str(best.version) == better  # ... then saw B's version and moved it there
    assert str(client.get_model_version_by_alias("shapes", "champion").version) == better


# Two experiments of one family and dataset that differ in what they learn.
CLIENTS = {
    "wide": ["model.box_units=[16]", "epochs=3"],
    "narrow": ["model.box_units=[4]", "epochs=2"],
}
SETS = ["image_size=[64,64]", "train.batch_size=8", "augment=false"]
MODEL = "shapes_bbox_regressor"  # the family ranks by mean_iou: DATASET_FAMILY


@pytest.mark.slow
def test_two_kdet_command_lines_at_once_deliver_every_run_metric_and_artifact(tmp_path):
    make_shapes(tmp_path, "shapes", one_box=True)
    env = child_env(KDET_PROJECT_ROOT=str(tmp_path))
    kdet = [str(VENV_BIN / "kdet")]
    processes, logs = {}, {}
    for name, options in CLIENTS.items():
        sets = [arg for text in (*SETS, *options) for arg in ("--set", text)]
        evaluate = [*kdet, "evaluate", "bbox_regressor", "--data", "shapes", "--name", name]
        publish = [
            *kdet,
            "publish",
            f"data/models/{name}/saved_model",
            "--dataset",
            "shapes",
            "--family",
            "bbox_regressor",
            "--registered-model",
            MODEL,
            "--metrics",
            f"data/metrics/{name}.json",
            "--metric",
            "mean_iou",
        ]
        script = f"{subprocess.list2cmdline(evaluate + sets)} && {subprocess.list2cmdline(publish)}"
        logs[name] = tmp_path / f"{name}.log"
        with open(logs[name], "wb") as out:
            processes[name] = subprocess.Popen(
                ["bash", "-c", script],
                cwd=tmp_path,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
    try:
        for name, process in processes.items():
            code = process.wait(timeout=DEADLINE_S)
            assert code == 0, f"{name} exited with {code}:\n{logs[name].read_text()[-3000:]}"
    finally:
        for process in processes.values():
            kill(process)
    for name in CLIENTS:
        assert "database is locked" not in logs[name].read_text()

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("shapes")
    all_runs = client.search_runs([experiment.experiment_id])
    names = sorted(r.info.run_name for r in all_runs)
    assert names == sorted([*CLIENTS, *["publish_bbox_regressor"] * len(CLIENTS)]), names
    assert all(r.info.status == "FINISHED" for r in all_runs)
    runs = {r.info.run_name: r for r in all_runs}
    runs_by_id = {r.info.run_id: r for r in all_runs}
    counts = {}
    for name, options in CLIENTS.items():
        run = runs[name]
        epochs = int(options[1].split("=")[1])
        metrics = json.loads((tmp_path / f"data/metrics/{name}.json").read_text())
        assert run.info.status == "FINISHED"
        for metric in ("loss", "val_loss"):
            steps = [m.step for m in client.get_metric_history(run.info.run_id, metric)]
            assert sorted(steps) == list(range(epochs)), (name, metric, steps)
        for metric, value in tracking.flatten_params(metrics).items():
            if isinstance(value, float):
                assert run.data.metrics[metric] == pytest.approx(value), (name, metric)
        artifacts = [a.path for a in client.list_artifacts(run.info.run_id)]
        assert {"saved_model", "evaluation", "figures"} <= set(artifacts), (name, artifacts)
        counts[name] = (len(run.data.metrics), len(artifacts))
    publish_runs = {r.info.run_id for r in all_runs if r.info.run_name.startswith("publish_")}
    assert all("mean_iou" in runs_by_id[run_id].data.metrics for run_id in publish_runs)
    versions = client.search_model_versions(f"name = '{MODEL}'")
    assert len(versions) == len(CLIENTS)
    assert {v.run_id for v in versions} == publish_runs  # one version per publish run
    for version in versions:  # the logged pyfunc model, SavedModel and all
        folder = Path(urlparse(client.get_model_version_download_uri(MODEL, version.version)).path)
        assert (folder / "MLmodel").is_file(), folder
        assert list(folder.rglob("saved_model.pb")), folder
    scores = {v.version: float(v.tags["metric.mean_iou"]) for v in versions}
    champion = client.get_model_version_by_alias(MODEL, "champion")
    assert scores[champion.version] == max(scores.values()), (scores, champion.version)
    print(
        f"concurrent: {len(all_runs)} runs, (metrics, artifact folders) per training run "
        f"{counts}, versions {scores}, champion {champion.version}"
    )


QUEUED = {"lr-01": 0.01, "lr-003": 0.003, "lr-001": 0.001}  # experiment -> learning rate
ROW = "bbox_regressor_shapes"


@pytest.mark.slow
@pytest.mark.timeout(3600)  # a hang bound, not a speed test: 11-20 min on the shared 2 cores
def test_queued_dvc_experiments_two_at_a_time_deliver_every_run_and_version(tmp_path):
    """``dvc exp run --queue`` of three experiments of the real fetch, train, evaluate and
    publish stages, then ``dvc queue start --jobs 2``: all of them log into the project's
    ``mlflow.db`` (the queue runs them in copies under ``.dvc/tmp/exps``)."""
    from tests.runner_helpers import tiny_row
    from tests.test_dvc_experiments import DVC, init_git_dvc, run, write_project

    project = tmp_path / "project"
    project.mkdir()
    row = tiny_row("bbox_regressor", "shapes", project)
    row["train"]["feature_cache_dir"] = "data/features"  # relative: each copy has its own
    shapes = {"source": "shapes", "num_images": 24, "image_size": 64, "max_objects": 1}
    params = {
        "datasets": {"shapes": {**shapes, "fractions": {"train": 0.75, "test": 0.25}, "seed": 0}},
        "experiments": {ROW: row},
        "publish": {"alias": "champion", "proposals": {"mode": "fast", "max_side": 300}},
    }
    write_project(project, params, ("fetch", "train", "evaluate", "publish"), copy_kdet=False)
    env = project_env(project, tmp_path)
    env["PYTHONPATH"] = str(REPO_ROOT)  # this checkout's kdet
    init_git_dvc(project, env)
    for name, rate in QUEUED.items():
        setting = f"++experiments.{ROW}.train.model.learning_rate={rate}"
        run([DVC, "exp", "run", "--queue", "-n", name, "-S", setting], project, env)
    # The workers leave as daemons holding the caller's stdout: not a pipe, or run() waits
    # for them; `dvc queue stop --kill` below ends them whatever happens.
    with open(tmp_path / "queue-start.log", "wb") as log:
        started = subprocess.run(
            [DVC, "queue", "start", "--jobs", "2"],
            cwd=project,
            env=env,
            stdout=log,
            stderr=log,
            timeout=300,
        )
    try:
        assert started.returncode == 0, (tmp_path / "queue-start.log").read_text()
        deadline = time.monotonic() + DEADLINE_S
        while True:  # a condition, bounded by a generous deadline
            status = run([DVC, "queue", "status"], project, env)
            if not any(word in status for word in ("Queued", "Running")):
                break
            assert time.monotonic() < deadline, status
            time.sleep(5)
    finally:
        run([DVC, "queue", "stop", "--kill"], project, env)
    logs = {name: run([DVC, "queue", "logs", name], project, env) for name in QUEUED}
    for name in QUEUED:
        assert "database is locked" not in logs[name], logs[name][-3000:]
    assert status.count("Success") == len(QUEUED), status

    client = mlflow.MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("shapes")
    runs = client.search_runs([experiment.experiment_id])
    by_experiment = {}
    for run_ in runs:
        assert run_.info.status == "FINISHED", run_.info
        by_experiment.setdefault(run_.data.tags.get("dvc_experiment"), []).append(run_)
    assert sorted(by_experiment) == sorted(QUEUED), by_experiment.keys()
    model = "shapes_bbox_regressor"
    for name, rate in QUEUED.items():
        named = sorted(r.info.run_name for r in by_experiment[name])
        assert named == sorted([ROW, "publish_bbox_regressor"]), (name, named)
        (trained,) = [r for r in by_experiment[name] if r.info.run_name == ROW]
        assert trained.data.params["train.model.learning_rate"] == str(rate)
        steps = [m.step for m in client.get_metric_history(trained.info.run_id, "loss")]
        assert steps == [0], (name, steps)
        assert {"mean_iou", "latency_ms"} <= set(trained.data.metrics)
        artifacts = {a.path for a in client.list_artifacts(trained.info.run_id)}
        assert {"saved_model", "evaluation"} <= artifacts, (name, artifacts)
    versions = client.search_model_versions(f"name = '{model}'")
    assert len(versions) == len(QUEUED)
    scores = {v.version: float(v.tags["metric.mean_iou"]) for v in versions}
    champion = client.get_model_version_by_alias(model, "champion")
    assert scores[champion.version] == max(scores.values()), (scores, champion.version)
    print(f"queued: {len(runs)} runs, versions {scores}, champion {champion.version}")
