import csv

import keras
import matplotlib
import numpy as np
import pytest

from kdet import training

matplotlib.use("Agg")


@pytest.fixture(autouse=True)
def restore_policy():
    yield
    keras.mixed_precision.set_global_policy("float32")


def test_precision_auto_and_errors(monkeypatch):
    monkeypatch.setattr(training, "has_gpu", lambda: False)
    monkeypatch.setattr(training, "cpu_has_amx_bf16", lambda: True)
    assert training.configure_precision("auto") == "mixed_bfloat16"
    monkeypatch.setattr(training, "has_gpu", lambda: True)
    assert training.configure_precision("auto") == "mixed_float16"
    assert keras.mixed_precision.global_policy().name == "mixed_float16"
    with pytest.raises(ValueError, match="Received: precision='fp8'"):
        training.configure_precision("fp8")


def test_fit_with_callbacks_early_stop_csv_and_checkpoint(tmp_path):
    training.set_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    x, y = np.random.rand(16, 3), np.random.rand(16, 1)
    callbacks = training.training_callbacks(
        early_stopping_patience=1,
        monitor="loss",
        history_csv=tmp_path / "history.csv",
        log_to_mlflow=False,
    )
    assert "EarlyStopping" in [type(c).__name__ for c in callbacks]
    history = training.fit(
        model, x, y, epochs=3, verbose=0, callbacks=callbacks, checkpoint_dir=tmp_path / "ckpt"
    )
    # a completed run deletes its resumable backup and leaves no .keras checkpoints
    assert not (tmp_path / "ckpt" / "backup").exists()
    assert not list(tmp_path.rglob("*.keras"))
    rows = list(csv.DictReader((tmp_path / "history.csv").read_text().splitlines()))
    assert len(rows) == len(history.history["loss"])
    fig = training.plot_history(history.history)
    assert fig.axes[0].get_title() == "loss"


def test_callbacks_of_a_non_chief_worker_write_nothing(tmp_path):
    callbacks = training.training_callbacks(
        early_stopping_patience=1,
        history_csv=tmp_path / "history.csv",
        log_to_mlflow=True,
        chief=False,
    )
    assert [type(c).__name__ for c in callbacks] == ["EarlyStopping"]
    assert list(tmp_path.iterdir()) == []
