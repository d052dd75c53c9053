"""An interrupted ``dvc repro`` of a fetch stage completes on the next run, no partial outputs."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import kdet

ROOT = Path(kdet.__file__).parents[1]
NUM_IMAGES = 3000
DVC_YAML = f"""stages:
  fetch_shapes:
    cmd: {sys.executable} {ROOT / "pipelines" / "fetch.py"} shapes
    params:
      - fetch.shapes
    outs:
      - data/raw/shapes
"""
PARAMS = f"fetch:\n  shapes:\n    num_images: {NUM_IMAGES}\n    image_size: 32\n    seed: 0\n"


def dvc(*args, cwd, **kwargs):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "dvc", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kwargs,
    )


def run_dvc(*args, cwd):
    process = dvc(*args, cwd=cwd)
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output[-3000:]
    return output


def test_interrupted_fetch_stage_reruns_to_a_complete_output(tmp_path):
    run_dvc("init", "--no-scm", "-q", cwd=tmp_path)
    (tmp_path / "dvc.yaml").write_text(DVC_YAML)
    (tmp_path / "params.yaml").write_text(PARAMS)
    images = tmp_path / "data" / "raw" / "shapes" / "images"

    first = dvc("repro", cwd=tmp_path, start_new_session=True)
    deadline = time.monotonic() + 120
    while not (images.is_dir() and len(os.listdir(images)) >= 50):
        if first.poll() is not None or time.monotonic() > deadline:
            first.kill()
            pytest.fail(f"the stage did not start writing:\n{first.communicate()[0][-3000:]}")
        time.sleep(0.05)
    os.killpg(first.pid, signal.SIGINT)  # Ctrl-C in the terminal: the whole group
    first.communicate(timeout=120)
    assert first.returncode != 0
    written = len(os.listdir(images))
    assert written < NUM_IMAGES  # interrupted half way
    assert not (tmp_path / "data/raw/shapes/records.json").exists()
    assert not (tmp_path / "dvc.lock").exists()  # DVC recorded nothing

    run_dvc("repro", cwd=tmp_path)
    out = tmp_path / "data" / "raw" / "shapes"
    records = json.loads((out / "records.json").read_text())
    assert len(records["records"]) == NUM_IMAGES
    assert sorted(os.listdir(images)) == [f"shape-{i:05d}.png" for i in range(NUM_IMAGES)]
    assert not [p for p in out.rglob("*") if p.name.endswith((".part", ".tmp", ".partial"))]
    assert "up to date" in run_dvc("status", cwd=tmp_path)


TRAIN_YAML = f"""stages:
  train_toy:
    cmd: {sys.executable} {Path(__file__).with_name("train_script.py")} data/models/toy 30
    outs:
      - data/models/toy/ckpt:
          persist: true
          cache: false
      - data/models/toy/result.json
"""


@pytest.mark.slow
def test_rerun_of_an_interrupted_training_stage_resumes_from_its_checkpoint(tmp_path):
    """The checkpoint folder is a ``persist: true`` out, so DVC keeps it for the re-run."""
    run_dvc("init", "--no-scm", "-q", cwd=tmp_path)
    (tmp_path / "dvc.yaml").write_text(TRAIN_YAML)
    folder = tmp_path / "data" / "models" / "toy"
    folder.mkdir(parents=True)

    first = dvc("repro", cwd=tmp_path, start_new_session=True)
    deadline = time.monotonic() + 180
    progress = folder / "progress"
    while not (progress.exists() and progress.read_text() and int(progress.read_text()) >= 2):
        if first.poll() is not None or time.monotonic() > deadline:
            first.kill()
            pytest.fail(f"training did not start:\n{first.communicate()[0][-3000:]}")
        time.sleep(0.05)
    os.killpg(first.pid, signal.SIGINT)
    first.communicate(timeout=120)
    assert first.returncode != 0
    while not (folder / "interrupted.json").exists():  # the script saves, then exits
        assert time.monotonic() < deadline, "the interrupted script did not stop"
        time.sleep(0.05)
    stopped_at = json.loads((folder / "interrupted.json").read_text())["epoch"]
    assert not (tmp_path / "dvc.lock").exists()

    run_dvc("repro", cwd=tmp_path)
    result = json.loads((folder / "result.json").read_text())
    assert result["epochs"][0] == stopped_at
    assert result["epochs"][-1] == 29
    assert "up to date" in run_dvc("status", cwd=tmp_path)
