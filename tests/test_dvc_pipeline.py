"""An added dataset and experiment row run with no code change, through the command line
inside a project: the project's real ``dvc.yaml`` and ``pipelines/`` in a throwaway git +
DVC project whose ``params.yaml`` holds one folder of the user's own images (VOC, COCO or
YOLO) and one tiny row; ``kdet train FAMILY --data mine`` runs that row's DVC stages."""

import json

import pytest

from tests.datasets.messy import make_coco, make_voc, make_yolo
from tests.runner_helpers import tiny_row
from tests.scale.processes import REPO_ROOT, VENV_BIN, project_env
from tests.test_dvc_experiments import DVC, init_git_dvc, run, write_project

KDET = str(VENV_BIN / "kdet")
MAKERS = {"voc": make_voc, "coco": make_coco, "yolo": make_yolo}
# One format x family pair in the default suite, the rest marked ``slow`` (``-m slow``).
CASES = [
    pytest.param("voc", "fast_rcnn"),
    pytest.param("coco", "fast_rcnn", marks=pytest.mark.slow),
    pytest.param("yolo", "fast_rcnn", marks=pytest.mark.slow),
    pytest.param("voc", "yolov8", marks=pytest.mark.slow),
    pytest.param("coco", "yolov8", marks=pytest.mark.slow),
    pytest.param("yolo", "yolov8", marks=pytest.mark.slow),
]


def last_json(stdout: str) -> dict:
    """The JSON line a ``kdet`` command ends its stdout with."""
    return json.loads(stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(("fmt", "family"), CASES)
def test_a_new_dataset_and_row_run_through_the_generated_stages(tmp_path, fmt, family):
    project = tmp_path / "project"
    project.mkdir()
    row = tiny_row(family, "mine", project)
    row["train"]["epochs"] = 2
    source = MAKERS[fmt](tmp_path / "labels")
    params = {
        "datasets": {"mine": {"source": fmt, "path": str(source)}},
        "experiments": {f"{family}_mine": row},
    }
    write_project(project, params, stages=("fetch", "train", "evaluate"), copy_kdet=False)
    env = project_env(project, tmp_path)
    env["PYTHONPATH"] = str(REPO_ROOT)  # this checkout's kdet
    init_git_dvc(project, env)
    row_name = f"{family}_mine"

    trained = last_json(run([KDET, "train", family, "--data", "mine"], project, env, 600))
    assert (trained["experiment"], trained["stage"]) == (row_name, f"train@{row_name}"), trained
    assert trained["command"] == f"dvc repro train@{row_name}"
    assert "train_seconds" in trained["metrics"][f"data/metrics/{row_name}_train.json"]
    evaluated = last_json(run([KDET, "evaluate", family, "--data", "mine"], project, env))
    assert evaluated["stage"] == f"evaluate@{row_name}", evaluated

    # DVC ran fetch, train and evaluate, and tracks what they wrote
    status = json.loads(run([DVC, "status", "--json"], project, env))
    assert not status, status  # every stage up to date
    shown = json.loads(run([DVC, "metrics", "show", "--json"], project, env))
    metrics = shown[""]["data"][f"data/metrics/{row_name}.json"]["data"]
    assert metrics == evaluated["metrics"][f"data/metrics/{row_name}.json"]
    assert 0.0 <= metrics["mAP50"] <= 1.0
    assert {"AP50/rectangle", "AP50/ellipse", "latency_ms"} <= set(metrics)
