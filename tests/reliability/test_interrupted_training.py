"""A training run stopped by SIGINT/SIGTERM leaves a checkpoint and resumes from its epoch."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import kdet

SCRIPT = Path(__file__).with_name("train_script.py")
ENV = {
    **os.environ,
    "PYTHONPATH": str(Path(kdet.__file__).parents[1]),
    "TF_CPP_MIN_LOG_LEVEL": "2",
}


DEADLINE_S = 300  # generous bound on any one wait: a busy machine is slow, never wrong


def start(folder, epochs, pause_after=None):
    pause = [] if pause_after is None else [str(pause_after)]
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), str(folder), str(epochs), *pause],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for_pause(process, folder):
    """Wait until the script pauses after its ``pause_after`` epochs (``FOLDER/paused``)."""
    paused = folder / "paused"
    deadline = time.monotonic() + DEADLINE_S
    while not paused.exists():
        if process.poll() is not None:
            pytest.fail(f"training ended early:\n{process.stdout.read()[-3000:]}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("training did not reach the epoch in time")
        time.sleep(0.05)


def interrupt(folder, signum, after_epochs):
    """Run until ``after_epochs`` more epochs are done, send ``signum`` while the script
    waits there, then let it go on: it must finish that epoch and stop.

    Returns ``(first epoch of the run, epochs completed when it stopped)``.
    """
    progress = folder / "progress"
    done_before = int(progress.read_text()) if progress.exists() else 0
    process = start(folder, epochs=1000, pause_after=done_before + after_epochs)
    wait_for_pause(process, folder)
    process.send_signal(signum)
    (folder / "go").touch()
    output, _ = process.communicate(timeout=DEADLINE_S)
    assert process.returncode == 3, output[-3000:]
    interrupted = json.loads((folder / "interrupted.json").read_text())
    name = signal.Signals(signum).name
    assert (
        f"{name} stopped training after epoch {interrupted['epoch']} of 1000"
        in (interrupted["message"])
    )
    metadata = json.loads((folder / "ckpt" / "backup" / "training_metadata.json").read_text())
    assert metadata["epoch"] == interrupted["epoch"]
    return interrupted["first_epoch"], interrupted["epoch"]


def test_interrupted_training_resumes_from_the_checkpoint_epoch(tmp_path):
    assert interrupt(tmp_path, signal.SIGINT, after_epochs=2) == (0, 2)
    assert interrupt(tmp_path, signal.SIGTERM, after_epochs=2) == (2, 4)

    last = start(tmp_path, epochs=6)
    output, _ = last.communicate(timeout=DEADLINE_S)
    assert last.returncode == 0, output[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["epochs"] == [4, 5]
    rows = list(csv.DictReader((tmp_path / "history.csv").read_text().splitlines()))
    assert [int(r["epoch"]) for r in rows] == list(range(6))
    # The weights came back too: the resumed loss continues the curve, far below the start.
    assert result["loss"][0] < float(rows[0]["loss"]) / 2
    assert not (tmp_path / "ckpt" / "backup").exists()  # a finished run cleans its backup


def test_signal_handlers_are_restored_when_fit_raises(tmp_path):
    import keras
    import numpy as np

    from kdet import training

    class Boom(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise RuntimeError("data error")

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(RuntimeError, match="data error"):
        training.fit(
            model,
            np.ones((4, 2)),
            np.ones((4, 1)),
            epochs=2,
            verbose=0,
            checkpoint_dir=tmp_path,
            callbacks=[Boom()],
        )
    assert signal.getsignal(signal.SIGINT) is before
