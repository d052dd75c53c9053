"""Every family's training function under a strategy, and the stages' ``strategy`` key.

The MirroredStrategy runs (2 logical CPU devices) happen in one child process
(``family_worker.py``): logical devices must be set before TensorFlow starts.
"""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from kdet.experiment import Experiment
from kdet.families import family_names, get_family
from kdet.models.single_box.train import train_single_box
from tests.models.single_box.conftest import make_single_box_records
from tests.scale.processes import REPO_ROOT, child_env, started, wait_all

WORKER = Path(__file__).with_name("family_worker.py")


@pytest.fixture(scope="module")
def mirrored(tmp_path_factory):
    """The worker's report: one entry per case (see ``family_worker.py``)."""
    folder = tmp_path_factory.mktemp("families")
    out, log = folder / "report.json", folder / "worker.log"
    command = [sys.executable, str(WORKER), str(out), str(folder / "data")]
    with started(command, log, env=child_env(), cwd=REPO_ROOT) as process:
        wait_all([process], [log], timeout=600)
    return json.loads(out.read_text())


def trained_on_two_replicas(entry: dict, steps: int) -> None:
    assert "error" not in entry, entry.get("error")
    assert entry["replicas"] == 2
    assert entry["optimizer_steps"] == steps
    assert entry["finite"] and entry["replicas_agree"]
    assert all(np.isfinite(entry["loss"]))


@pytest.mark.slow
def test_single_box_trains_on_the_global_batch(mirrored):
    entry = mirrored["single_box"]
    # 14 training images (2 held out for validation), 4 per replica: steps of 8 and 6.
    trained_on_two_replicas(entry, steps=2)
    assert entry["info"]["global_batch_size"] == 8 and entry["info"]["replicas"] == 2
    # One machine: this process is the chief and writes.
    assert entry["written"] == ["single_box_history.csv"]


@pytest.mark.slow
def test_single_box_feature_cache_trains_the_head(mirrored):
    entry = mirrored["single_box_cache"]
    trained_on_two_replicas(entry, steps=4)  # 2 epochs of 2 steps
    assert entry["fitted"] == "multiclass_detector_head"
    assert entry["info"]["feature_cache"] == "miss"
    assert entry["features_shape"][0] == 24 and entry["cache_files"] == [".json", ".npy"]
    assert entry["prediction_finite"]


@pytest.mark.slow
def test_yolov8_with_ema(mirrored):
    entry = mirrored["yolov8"]
    trained_on_two_replicas(entry, steps=2)  # 16 images, 4 per replica
    assert entry["use_ema"] and entry["optimizer_class"] == "AdamW"


@pytest.mark.slow
def test_rcnn_classifier(mirrored):
    trained_on_two_replicas(mirrored["rcnn"], steps=2)  # 12 crops, 3 per replica


@pytest.mark.slow
def test_fast_rcnn(mirrored):
    trained_on_two_replicas(mirrored["fast_rcnn"], steps=1)  # 2 images x 2 samples, 2 per replica


def test_auto_is_the_default_strategy_here(tmp_path):
    """On one CPU device ``auto`` resolves to the default strategy: the same losses."""
    records = make_single_box_records(tmp_path, count=12)
    options = {
        "model_options": {"backbone": "small_cnn"},
        "image_size": (64, 64),
        "epochs": 2,
        "batch_size": 4,
        "augment": True,
        "verbose": 0,
    }
    auto = train_single_box(records, strategy="auto", **options)
    default = train_single_box(records, strategy="default", **options)
    assert auto.info["replicas"] == 1 and auto.info["global_batch_size"] == 4
    assert auto.history["loss"] == default.history["loss"]
    assert np.isfinite(auto.history["loss"]).all()


def test_every_training_stage_has_a_strategy_param():
    """Every row's ``train`` options (the train stages' params) hold ``strategy``: ``auto``
    unless the row says otherwise; every family's training takes one."""
    stages = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    assert "experiments.${key}.train" in stages["train"]["do"]["params"]
    assert "finetune.${key}.train" in stages["finetune"]["do"]["params"]
    rows = {**params["experiments"], **params["finetune"]}
    assert {row["family"] for row in rows.values()} <= set(family_names())
    for name, row in rows.items():
        experiment = Experiment.from_row(name, row)
        assert experiment.train["strategy"] == row["train"].get("strategy", "auto"), name
        assert experiment.train["strategy"] == "auto", name
    for name in family_names():
        assert "strategy" not in get_family(name).defaults["train"]  # the runner adds it
