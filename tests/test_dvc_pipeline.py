"""An added dataset and experiment row run with no code change: the project's real
``dvc.yaml`` and ``pipelines/`` in a throwaway git + DVC project whose ``params.yaml`` holds
one VOC folder of the user's own images and one tiny YOLOv8 row."""

import json

import yaml

from tests.datasets.messy import make_voc
from tests.runner_helpers import tiny_row
from tests.scale.processes import REPO_ROOT, project_env
from tests.test_dvc_experiments import DVC, init_git_dvc, run, write_project

ROW = "yolov8_mine"


def test_a_new_dataset_and_row_run_through_the_generated_stages(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    row = tiny_row("yolov8", "mine", project)
    row["train"]["epochs"] = 2
    params = {
        "datasets": {"mine": {"source": "voc", "path": str(make_voc(tmp_path / "voc"))}},
        "experiments": {ROW: row},
    }
    write_project(project, params, stages=("fetch", "train", "evaluate"), copy_kdet=False)
    env = project_env(project, tmp_path)
    env["PYTHONPATH"] = str(REPO_ROOT)  # this checkout's kdet
    init_git_dvc(project, env)

    output = run([DVC, "repro", f"evaluate@{ROW}"], project, env, timeout=600)
    for stage in ("fetch@mine", f"train@{ROW}", f"evaluate@{ROW}"):
        assert f"Running stage '{stage}'" in output, output

    shown = json.loads(run([DVC, "metrics", "show", "--json"], project, env))
    metrics = shown[""]["data"][f"data/metrics/{ROW}.json"]["data"]
    assert 0.0 <= metrics["mAP50"] <= 1.0
    assert {"AP50/rectangle", "AP50/ellipse", "latency_ms"} <= set(metrics)
    assert "train_seconds" in shown[""]["data"][f"data/metrics/{ROW}_train.json"]["data"]

    (workspace,) = [b for b in json.loads(run([DVC, "exp", "show", "--json"], project, env))
                    if b["rev"] == "workspace"]  # fmt: skip
    shown_params = workspace["data"]["params"]["params.yaml"]["data"]
    assert shown_params["experiments"][ROW] == row
    assert shown_params["datasets"]["mine"]["source"] == "voc"
    assert "up to date" in run([DVC, "status", f"evaluate@{ROW}"], project, env)
    assert yaml.safe_load((project / "dvc.lock").read_text())["stages"][f"train@{ROW}"]
