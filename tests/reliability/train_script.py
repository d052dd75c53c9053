"""A tiny training run for the interruption tests: ``python train_script.py FOLDER EPOCHS``.

Writes ``FOLDER/progress`` (epochs completed) after each epoch, and on success
``FOLDER/result.json`` with the epochs this run trained and their losses. Interrupted by a
signal it exits 3 and writes ``FOLDER/interrupted.json``.
"""

import json
import sys
import time
from pathlib import Path

import keras
import numpy as np

from kdet import training


class Progress(keras.callbacks.Callback):
    def __init__(self, folder):
        super().__init__()
        self.folder = folder

    def on_epoch_end(self, epoch, logs=None):
        time.sleep(0.3)  # slow enough for the test to send a signal mid-run
        (self.folder / "progress").write_text(str(epoch + 1))


def main():
    folder, epochs = Path(sys.argv[1]), int(sys.argv[2])
    training.set_seed(0)
    x = np.random.default_rng(0).random((64, 4)).astype("float32")
    y = x @ np.array([[1.0], [-2.0], [0.5], [3.0]], "float32")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(0.05), "mse")
    callbacks = training.training_callbacks(history_csv=folder / "history.csv", log_to_mlflow=False)
    callbacks.append(Progress(folder))
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
