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


class CountingModel(keras.Sequential):
    """Counts how often TensorFlow traces its train step (Python runs only when tracing)."""

    traces = 0

    def train_step(self, data):
        self.traces += 1
        return super().train_step(data)


def counting_model() -> CountingModel:
    training.set_seed(0)
    model = CountingModel([keras.Input((3,)), keras.layers.Dense(4), keras.layers.Dense(1)])
    model.compile(keras.optimizers.Adam(1e-2), "mse", metrics=["mae"])
    return model


def test_fit_traces_the_train_step_once_and_trains_as_keras_does():
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x, y = rng.random((32, 3), dtype=np.float32), rng.random((32, 1), dtype=np.float32)
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)

    keras_way = counting_model()
    expected = keras_way.fit(data, epochs=3, verbose=0).history
    kdet_way = counting_model()
    history = training.fit(kdet_way, data, epochs=3, checkpoint_dir=None, verbose=0).history

    assert keras_way.traces == 2  # Keras makes the optimizer's variables in a first trace
    assert kdet_way.traces == 1
    assert history["loss"] == pytest.approx(expected["loss"], rel=1e-6)
    assert history["mae"] == pytest.approx(expected["mae"], rel=1e-6)
