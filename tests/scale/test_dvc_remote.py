"""A DVC remote: repro + push in one project, clone + pull elsewhere, nothing to re-run."""

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.scale.processes import REPO_ROOT, VENV_BIN, project_env

# Slow: a push, clone and pull through a local remote.
pytestmark = pytest.mark.slow

DVC = str(VENV_BIN / "dvc")
PARAMS = {
    "datasets": {
        "shapes": {
            "source": "shapes",
            "num_images": 12,
            "image_size": 32,
            "max_objects": 2,
            "fractions": {"train": 0.75, "test": 0.25},
            "seed": 0,
        }
    },
    "train_small": {"image_size": 32, "batch_size": 4, "epochs": 1, "seed": 0, "strategy": "auto"},
}
TRAIN_STAGE = {
    "cmd": "python pipelines/train_small.py",
    "deps": [
        "pipelines/train_small.py",
        "data/raw/shapes",
        "kdet/training.py",
        "kdet/distribute.py",
        "kdet/models/backbones.py",
    ],
    "params": ["train_small"],
    "outs": ["data/models/small"],
    "metrics": [{"data/metrics/small.json": {"cache": False}}],
}


def run(command, cwd: Path, env: dict, timeout: float = 180) -> str:
    """Run a command to completion (killed after ``timeout``); fail with its output."""
    result = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{command} exited with {result.returncode}:\n{output}"
    return output


def make_project(root: Path) -> None:
    """A small copy of kdet's project: the package, the real ``fetch@DATASET`` stages (one
    dataset) and a train stage."""
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(REPO_ROOT / "kdet", root / "kdet", ignore=ignore)
    (root / "pipelines").mkdir()
    for script in ("fetch.py", "stage_timing.py"):
        shutil.copy(REPO_ROOT / "pipelines" / script, root / "pipelines" / script)
    shutil.copy(Path(__file__).with_name("dvc_train_stage.py"), root / "pipelines/train_small.py")
    stages = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]
    dvc_yaml = {"stages": {"fetch": stages["fetch"], "train_small": TRAIN_STAGE}}
    (root / "dvc.yaml").write_text(yaml.safe_dump(dvc_yaml, sort_keys=False))
    (root / "params.yaml").write_text(yaml.safe_dump(PARAMS, sort_keys=False))


def test_push_to_a_remote_then_clone_and_pull(tmp_path):
    project, remote, clone = tmp_path / "project", tmp_path / "remote", tmp_path / "clone"
    project.mkdir()
    make_project(project)
    env = project_env(project, tmp_path)

    run(["git", "init", "-q", "-b", "main"], project, env)
    run([DVC, "init", "-q"], project, env)
    run([DVC, "remote", "add", "-d", "storage", str(remote)], project, env)
    run([DVC, "repro"], project, env, timeout=300)
    run(["git", "add", "-A"], project, env)
    run(["git", "commit", "-qm", "pipeline and its lock"], project, env)
    pushed = run([DVC, "push"], project, env)
    assert "pushed" in pushed
    assert any(remote.rglob("*")), "the remote stayed empty"

    run(["git", "clone", "-q", str(project), str(clone)], tmp_path, env)
    cached = ("data/raw/shapes/records.json", "data/models/small/model.keras")
    assert not any((clone / path).exists() for path in cached)  # they travel through DVC
    env["PYTHONPATH"] = str(clone)
    run([DVC, "pull"], clone, env)
    for path in cached:
        assert (clone / path).read_bytes() == (project / path).read_bytes(), path
    images = sorted(p.name for p in (clone / "data/raw/shapes/images").iterdir())
    assert len(images) == PARAMS["datasets"]["shapes"]["num_images"]

    status = run([DVC, "status"], clone, env)
    assert "Data and pipelines are up to date." in status, status
    repro = run([DVC, "repro"], clone, env)
    assert "didn't change, skipping" in repro and "Running stage" not in repro, repro
    assert "Cache and remote 'storage' are in sync." in run([DVC, "status", "-c"], clone, env)
