"""``kill -9`` of an experiment's training costs at most one epoch: the next run resumes from
the last completed epoch in the same MLflow run, for every family.

The kill lands at a point the test controls (after the history shows two finished epochs),
and the resumed run is stopped by SIGINT once it has finished two more (it then saves and
exits non-zero); no outcome depends on how fast the machine is.
"""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kdet.datasets import fetch
from tests.scale.processes import child_env

DEADLINE_S = 900  # a bound on each wait; a busy machine is slow, never wrong
RUNNER = """
import json, sys
from kdet import experiment
from kdet.experiment import Experiment
experiment.train(Experiment.from_row("killed", json.loads(sys.argv[2])), root=sys.argv[1])
"""
ROWS = {
    "bbox_regressor": {
        "family": "bbox_regressor",
        "train": {"image_size": [64, 64], "batch_size": 8, "model": {"box_units": [16]}},
    },
    "yolov8": {"family": "yolov8", "train": {"image_size": 64, "batch_size": 8}},
    "rcnn": {
        "family": "rcnn",
        "train": {"input_size": 32, "proposals": {"max_side": 64, "processes": 1}},
    },
    "fast_rcnn": {
        "family": "fast_rcnn",
        "train": {"image_size": 64, "proposals": {"max_side": 64, "processes": 1}},
    },
}


def start(root: Path, row: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", RUNNER, str(root), json.dumps(row)],
        env=child_env(KDET_PROJECT_ROOT=str(root)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def epochs_done(history: Path) -> list[int]:
    if not history.exists():
        return []
    with open(history, newline="") as f:
        return [int(row["epoch"]) for row in csv.DictReader(f) if row.get("epoch")]


def wait_for_epochs(process, history: Path, count: int) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while len(epochs_done(history)) < count:
        if process.poll() is not None:
            pytest.fail(f"training ended early:\n{process.stderr.read()[-3000:]}")
        if time.monotonic() > deadline:
            os.killpg(process.pid, signal.SIGKILL)
            pytest.fail(f"training did not reach {count} epochs within {DEADLINE_S} s")
        time.sleep(0.1)


@pytest.mark.parametrize(
    "family",
    [
        "bbox_regressor",
        pytest.param("yolov8", marks=pytest.mark.slow),
        pytest.param("rcnn", marks=pytest.mark.slow),
        pytest.param("fast_rcnn", marks=pytest.mark.slow),
    ],
)
def test_kill_9_then_rerun_resumes_from_the_last_epoch(tmp_path, family):
    max_objects = 1 if family == "bbox_regressor" else 2
    fetch(
        "shapes",
        tmp_path / "data/raw/shapes",
        num_images=24,
        image_size=64,
        max_objects=max_objects,
        seed=0,
    )
    row = {**ROWS[family], "dataset": "shapes", "evaluate": {}}
    row["train"] = {**row["train"], "epochs": 100_000}  # never finishes by itself
    history = tmp_path / "data/plots/killed/history.csv"

    first = start(tmp_path, row)
    wait_for_epochs(first, history, 2)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=DEADLINE_S)
    done = epochs_done(history)
    (run_id_file,) = (tmp_path / "data/checkpoints/killed").glob("*/mlflow_run_id")
    run_id = run_id_file.read_text()
    assert not (tmp_path / "data/models/killed/train").exists()  # nothing taken as finished

    second = start(tmp_path, row)
    wait_for_epochs(second, history, len(done) + 2)
    os.killpg(second.pid, signal.SIGINT)  # finish the epoch, save, stop
    second.wait(timeout=DEADLINE_S)
    log = second.stderr.read()
    assert second.returncode != 0 and "TrainingInterrupted" in log, log[-3000:]
    assert "resuming training from the checkpoint" in log
    epochs = epochs_done(history)
    resumed_at = epochs[len(done)]
    # The backup is written at the end of each epoch before the history line, so the kill
    # costs at most the epoch it interrupted: the rerun starts where the history stopped
    # (or one later, when the kill fell between the backup and the history line).
    assert resumed_at in (done[-1] + 1, done[-1] + 2), epochs
    assert epochs[len(done) :] == list(range(resumed_at, resumed_at + len(epochs) - len(done)))
    assert run_id_file.read_text() == run_id  # the same MLflow run goes on
