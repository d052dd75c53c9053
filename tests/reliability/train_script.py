"""A tiny training run for the interruption tests:
``python train_script.py FOLDER EPOCHS [PAUSE_AFTER]``.

Writes ``FOLDER/progress`` (epochs completed) after each epoch, and on success
``FOLDER/result.json`` with the epochs this run trained and their losses. Interrupted by a
signal it exits 3 and writes ``FOLDER/interrupted.json``.

With ``PAUSE_AFTER``, once that many epochs are complete the script writes
``FOLDER/paused`` and waits until the test creates ``FOLDER/go`` (then removes both): a
test sends its signal during the pause, so where training stops never depends on timing.
"""

import json
import sys
import time
from pathlib import Path

import keras
import numpy as np

from kdet import training

PAUSE_LIMIT_S = 600  # a test that never says "go" has failed; do not wait forever


class Progress(keras.callbacks.Callback):
    def __init__(self, folder, pause_after=None):
        super().__init__()
        self.folder = folder
        self.pause_after = pause_after

    def on_epoch_end(self, epoch, logs=None):
        (self.folder / "progress").write_text(str(epoch + 1))
        if epoch + 1 == self.pause_after:
            self.pause()

    def pause(self):
        paused, go = self.folder / "paused", self.folder / "go"
        paused.write_text(str(self.pause_after))
        deadline = time.monotonic() + PAUSE_LIMIT_S
        while not go.exists():  # signal handlers run during the sleeps
            if time.monotonic() > deadline:
                raise RuntimeError(f"no {go} after {PAUSE_LIMIT_S} s")
            time.sleep(0.05)
        go.unlink()
        paused.unlink()


def main():
    folder, epochs = Path(sys.argv[1]), int(sys.argv[2])
    pause_after = int(sys.argv[3]) if len(sys.argv) > 3 else None
    training.set_seed(0)
    x = np.random.default_rng(0).random((64, 4)).astype("float32")
    y = x @ np.array([[1.0], [-2.0], [0.5], [3.0]], "float32")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(0.05), "mse")
    callbacks = training.training_callbacks(history_csv=folder / "history.csv", log_to_mlflow=False)
    callbacks.append(Progress(folder, pause_after))
    try:
        history = training.fit(
            model,
            x,
            y,
            epochs=epochs,
            batch_size=16,
            verbose=0,
            checkpoint_dir=folder / "ckpt",
            callbacks=callbacks,
        )
    except training.TrainingInterrupted as err:
        (folder / "interrupted.json").write_text(
            json.dumps(
                {"first_epoch": err.history.epoch[0], "epoch": err.epoch, "message": str(err)}
            )
        )
        sys.exit(3)
    result = {"epochs": history.epoch, "loss": history.history["loss"]}
    (folder / "result.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main()
