"""An interrupted ``dvc repro`` leaves no output taken for complete; the next run finishes.

The tests decide when the interruption happens: the fetch stage downloads its archive
from a loopback mirror that holds the transfer half way until the test has sent its
signal, and the training script waits after an epoch for the test's go. No outcome
depends on how fast the machine is.

``kill -9`` of ``dvc repro`` in a ``train@NAME`` stage is tried for every family whose
training stage trains by epochs: bbox_regressor, multiclass, rcnn, fast_rcnn,
sliding_window, yolov8 and retinanet. The sliding window's ``train@`` stage trains the
R-CNN window classifier by epochs (it copies a trained one only in a ``finetune`` row with
``init_from``), so it is in. The killed and resumed run's losses must equal those of the
same row trained by ``dvc repro`` without interruption (see :data:`LOSS_REL_TOLERANCE`).
"""

import csv
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest

import kdet
from tests.datasets.test_raccoon import MIRROR_PATH, default_files, make_archive
from tests.scale.processes import project_env

ROOT = Path(kdet.__file__).parents[1]
DEADLINE_S = 300  # generous bound on any one wait: a busy machine is slow, never wrong
HELD_BYTES = 8 * 65536  # whole download chunks, so the client writes all of them out

# The project's fetch@DATASET stages (generated from params.yaml datasets:), with one dataset.
FETCH_YAML = f"""stages:
  fetch:
    foreach: ${{datasets}}
    do:
      cmd: {sys.executable} {ROOT / "pipelines" / "fetch.py"} ${{key}}
      params:
        - datasets.${{key}}
      outs:
        - data/raw/${{key}}
"""
FETCH_PARAMS = "datasets:\n  raccoon:\n    source: raccoon\n    seed: 0\n    progress: false\n"
ARCHIVE = "data/raw/raccoon/downloads/raccoon_dataset-master.zip"


def dvc_env(tmp_path, **extra):
    """Settings of DVC and git under ``tmp_path/scratch``; this checkout's ``kdet``."""
    env = project_env(tmp_path / "project", tmp_path / "scratch")
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def dvc(*args, cwd, env, **kwargs):
    return subprocess.Popen(
        [sys.executable, "-m", "dvc", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kwargs,
    )


def run_dvc(*args, cwd, env):
    process = dvc(*args, cwd=cwd, env=env)
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output[-3000:]
    return output


def wait_until(condition, process, what):
    """Poll ``condition`` until true; fail early if ``process`` ends, late at the deadline."""
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        if process.poll() is not None or time.monotonic() > deadline:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            pytest.fail(f"{what} did not happen:\n{process.communicate()[0][-3000:]}")
        time.sleep(0.05)


def interrupt(process, signum, then=lambda: None):
    """Send ``signum`` to the process group ``process`` leads (as Ctrl-C in a terminal
    does, or as ``kill -9 -PGID``), call ``then()``; return the output once the whole
    group is gone."""
    os.killpg(process.pid, signum)
    then()
    try:
        output, _ = process.communicate(timeout=DEADLINE_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        pytest.fail(f"dvc did not stop on {signal.Signals(signum).name}")
    deadline = time.monotonic() + DEADLINE_S
    while True:  # the stage's command leaves with its parent, not necessarily at once
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return output
        assert time.monotonic() < deadline, "the stage's process outlived dvc"
        time.sleep(0.05)


class _HoldingHandler(BaseHTTPRequestHandler):
    """Serves ``server.root`` with Range support. The first request of ``server.held``
    gets ``HELD_BYTES`` of the body, then the connection stays silent until
    ``server.released`` is set and closes; later requests wait for the release."""

    protocol_version = "HTTP/1.1"

    def do_GET(self):
        server = self.server
        path = unquote(self.path.split("?", 1)[0])
        server.log.append((path, self.headers.get("Range")))
        first = path == server.held and not server.holding.is_set()
        if path == server.held and not first:
            server.released.wait(DEADLINE_S)
        file = server.root / path.lstrip("/")
        if not file.is_file():
            self.send_error(404)
            return
        data = file.read_bytes()
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        start = int(match[1]) if match else 0
        if start:
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        if first:
            server.holding.set()
            self.wfile.write(data[:HELD_BYTES])
            self.wfile.flush()
            server.released.wait(DEADLINE_S)
            self.close_connection = True
            return
        self.wfile.write(data[start:])

    def log_message(self, *args):
        pass


@pytest.fixture
def holding_mirror(tmp_path):
    """A loopback mirror holding a fake raccoon archive (``.archive``) at ``.base``."""
    root = tmp_path / "mirror"
    files = default_files()
    files["filler.bin"] = np.random.default_rng(0).bytes(4 * HELD_BYTES)  # not extracted
    archive = make_archive(root, files)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _HoldingHandler)
    httpd.daemon_threads = True
    httpd.root, httpd.archive, httpd.held, httpd.log = root, archive, "/" + MIRROR_PATH, []
    httpd.holding, httpd.released = threading.Event(), threading.Event()
    httpd.base = f"http://127.0.0.1:{httpd.server_address[1]}/"
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield httpd
    httpd.released.set()
    httpd.shutdown()
    httpd.server_close()


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_interrupted_fetch_stage_reruns_to_a_complete_output(tmp_path, holding_mirror, signum):
    project = tmp_path / "project"
    project.mkdir()
    env = dvc_env(tmp_path, KDET_MIRROR=holding_mirror.base)
    run_dvc("init", "--no-scm", "-q", cwd=project, env=env)
    (project / "dvc.yaml").write_text(FETCH_YAML)
    (project / "params.yaml").write_text(FETCH_PARAMS)
    out = project / "data" / "raw" / "raccoon"
    part = project / (ARCHIVE + ".part")

    first = dvc("repro", cwd=project, env=env, start_new_session=True)
    # The mirror now holds the rest of the archive: the stage cannot finish on its own.
    wait_until(
        lambda: part.is_file() and part.stat().st_size == HELD_BYTES,
        first,
        "the stage writing the first half of the archive",
    )
    # The hold lasts until the whole process group is gone: releasing it any earlier would
    # race the signal (a closed connection can be retried before the interrupt lands).
    output = interrupt(first, signum)
    holding_mirror.released.set()
    assert first.returncode != 0, output[-3000:]
    assert part.stat().st_size == HELD_BYTES  # interrupted half way ...
    assert not (project / ARCHIVE).exists()  # ... and the archive never got its name
    assert not (out / "records.json").exists()
    assert not (project / "dvc.lock").exists()  # DVC recorded nothing ...
    cache = project / ".dvc" / "cache"
    assert not [p for p in cache.rglob("*") if p.is_file()]  # ... and cached nothing

    run_dvc("repro", cwd=project, env=env)
    records = json.loads((out / "records.json").read_text())
    assert len(records["records"]) == 5
    assert sha256(project / ARCHIVE) == sha256(holding_mirror.archive)
    assert sorted(p.name for p in (out / "raccoon_dataset-master" / "images").iterdir()) == [
        f"raccoon-{n}.jpg" for n in range(1, 6)
    ]
    assert not [p for p in out.rglob("*") if p.name.endswith((".part", ".tmp", ".partial"))]
    assert "up to date" in run_dvc("status", cwd=project, env=env)


TRAIN_YAML = f"""stages:
  train_toy:
    cmd: {sys.executable} {Path(__file__).with_name("train_script.py")} data/models/toy 30 2
    outs:
      - data/models/toy/ckpt:
          persist: true
          cache: false
      - data/models/toy/result.json
"""


@pytest.mark.slow
def test_rerun_of_an_interrupted_training_stage_resumes_from_its_checkpoint(tmp_path):
    """The checkpoint folder is a ``persist: true`` out, so DVC keeps it for the re-run."""
    project = tmp_path / "project"
    project.mkdir()
    env = dvc_env(tmp_path)
    run_dvc("init", "--no-scm", "-q", cwd=project, env=env)
    (project / "dvc.yaml").write_text(TRAIN_YAML)
    folder = project / "data" / "models" / "toy"
    folder.mkdir(parents=True)

    first = dvc("repro", cwd=project, env=env, start_new_session=True)
    # The script waits after epoch 2 until the file "go" exists: the signal comes first.
    wait_until(lambda: (folder / "paused").exists(), first, "training reaching epoch 2")
    output = interrupt(first, signal.SIGINT, then=(folder / "go").touch)
    assert first.returncode != 0, output[-3000:]
    stopped = json.loads((folder / "interrupted.json").read_text())
    assert stopped["epoch"] == 2  # the epoch running when the signal came was finished
    assert not (project / "dvc.lock").exists()

    run_dvc("repro", cwd=project, env=env)
    result = json.loads((folder / "result.json").read_text())
    assert result["epochs"] == list(range(2, 30))
    assert "up to date" in run_dvc("status", cwd=project, env=env)


PAUSED_STAGE = Path(__file__).with_name("paused_stage.py")
KILLED_EPOCHS = 4  # the row trains 4 epochs; the kill lands after the second
PAUSE_AFTER = 2
# Training is seeded, and a resumed ``kdet.training.fit`` puts back the weights, the
# optimizer, the data order (``ReplayDataOrder``) and the Dropout masks' seed generators
# (``KeepSeedGenerators``): the killed and resumed run repeats the uninterrupted one.
# Measured with this test (2 shared CPU cores, TensorFlow 2.21, Keras 3.15): every family's
# per-epoch losses were bit-identical to the uninterrupted run's. Two processes can still
# differ by float round-off: once in three runs fast_rcnn's first epoch (before the kill)
# differed by 2e-7 relative, its fourth by 4.5e-5 (a run that did not restore the data
# order yet, which fast_rcnn's loss hardly depends on). What a lost piece of state costs is
# far more: without the data order put back the resumed epochs differed by 0.6 %
# (bbox_regressor), without the data order or the Dropout state by 3 % to 14 % (multiclass,
# rcnn, sliding_window). 1e-3 is 20 times the round-off seen and 6 times below the
# smallest of those.
LOSS_REL_TOLERANCE = 1e-3
FAMILIES = [  # every family whose train@ stage trains by epochs (see the module docstring)
    "bbox_regressor",
    "multiclass",
    "rcnn",
    "fast_rcnn",
    "sliding_window",
    "yolov8",
    "retinanet",
]


def train_stage_project(project: Path, family: str) -> str:
    """kdet's real ``train@NAME`` stage of ``family``'s tiny row (through
    ``paused_stage.py``, which can hold it after an epoch) and its dataset; returns NAME."""
    from tests.runner_helpers import dataset_for, tiny_row
    from tests.test_dvc_experiments import write_project

    name = f"{family}_killed"
    row = tiny_row(family, dataset_for(family, project), project)
    row["train"]["epochs"] = KILLED_EPOCHS
    write_project(project, {"experiments": {name: row}}, stages=("train",), copy_kdet=False)
    dvc_yaml = project / "dvc.yaml"
    command = f"{sys.executable} {PAUSED_STAGE}"
    dvc_yaml.write_text(dvc_yaml.read_text().replace("python pipelines/experiment.py", command))
    return name


def history_rows(path: Path) -> list[dict]:
    return list(csv.DictReader(path.read_text().splitlines())) if path.exists() else []


def history_epochs(path: Path) -> list[int]:
    return [int(row["epoch"]) for row in history_rows(path)]


def losses(path: Path) -> list[float]:
    return [float(row["loss"]) for row in history_rows(path)]


def uninterrupted_losses(tmp_path: Path, family: str) -> list[float]:
    """The per-epoch losses of the same row's ``dvc repro`` in a second project, never
    interrupted."""
    env = dvc_env(tmp_path)
    project = tmp_path / "project"
    project.mkdir(parents=True)
    run_dvc("init", "--no-scm", "-q", cwd=project, env=env)
    name = train_stage_project(project, family)
    run_dvc("repro", cwd=project, env=env)
    return losses(project / "data" / "plots" / name / "history.csv")


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_kill_9_of_dvc_repro_in_a_training_stage_resumes_from_the_last_epoch(tmp_path, family):
    """``kill -9`` of the whole ``dvc repro`` process group once the stage has finished two
    epochs; the next ``dvc repro`` (no lock to clear: DVC ignores the dead process's entry
    in ``.dvc/tmp/rwlock``) resumes at epoch 2 in the same MLflow run and completes, with
    the losses of an uninterrupted run."""
    import mlflow

    if family == "retinanet":
        pytest.importorskip("keras_hub", reason="the RetinaNet family needs keras-hub")
    started = time.monotonic()
    project = tmp_path / "project"
    project.mkdir()
    env = dvc_env(tmp_path)
    run_dvc("init", "--no-scm", "-q", cwd=project, env=env)
    name = train_stage_project(project, family)
    paused = tmp_path / "paused"
    history = project / "data" / "plots" / name / "history.csv"
    checkpoints = project / "data" / "checkpoints" / name
    trained = project / "data" / "models" / name / "train"
    metrics = project / "data" / "metrics" / f"{name}_train.json"

    pausing = {
        **env,
        "KDET_TEST_PAUSE_AFTER": str(PAUSE_AFTER),
        "KDET_TEST_PAUSE_FILE": str(paused),
    }
    first = dvc("repro", cwd=project, env=pausing, start_new_session=True)
    wait_until(paused.exists, first, f"the training stage finishing epoch {PAUSE_AFTER}")
    output = interrupt(first, signal.SIGKILL)
    assert first.returncode == -signal.SIGKILL, output[-3000:]
    assert history_epochs(history) == list(range(PAUSE_AFTER))
    (run_id_file,) = checkpoints.glob("*/mlflow_run_id")
    run_id = run_id_file.read_text()
    # Nothing half-written taken for an output: no model, no metrics, no lock entry.
    assert not trained.exists()
    assert not metrics.exists()
    assert not (project / "dvc.lock").exists()

    output = run_dvc("repro", cwd=project, env=env)
    assert "resuming training from the checkpoint" in output, output[-3000:]
    assert history_epochs(history) == list(range(KILLED_EPOCHS))  # the whole curve
    info = json.loads((trained / "run.json").read_text())
    assert info["run_id"] == run_id  # the same MLflow run went on
    assert (trained / "model.keras").is_file()
    numbers = json.loads(metrics.read_text())
    resumed = losses(history)
    # the last epoch's loss ("loss" of the one-box families, "final_loss" of the others)
    assert numbers.get("loss", numbers.get("final_loss")) == pytest.approx(resumed[-1])
    assert not checkpoints.exists()
    client = mlflow.MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    steps = sorted(m.step for m in client.get_metric_history(run_id, "loss"))
    assert steps == list(range(KILLED_EPOCHS)), steps  # each epoch logged once
    assert "up to date" in run_dvc("status", cwd=project, env=env)

    straight = uninterrupted_losses(tmp_path / "uninterrupted", family)
    differences = [abs(a - b) / abs(b) for a, b in zip(resumed, straight, strict=True)]
    print(
        f"\n{family}: kill -9 after epochs 0..{PAUSE_AFTER - 1}, rerun trained "
        f"{PAUSE_AFTER}..{KILLED_EPOCHS - 1}; last loss {resumed[-1]!r} (killed+resumed) vs "
        f"{straight[-1]!r} (uninterrupted), largest relative difference of an epoch's loss "
        f"{max(differences):.2g}; {time.monotonic() - started:.0f} s"
    )
    assert resumed == pytest.approx(straight, rel=LOSS_REL_TOLERANCE), (resumed, straight)
