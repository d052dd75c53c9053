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


class _Recorder(keras.Model):
    """Records the first feature of every training batch (eagerly), trains nothing."""

    def __init__(self, seen):
        super().__init__()
        self.record = seen.append  # (an attribute list would be Keras's tracked copy)
        self.dense = keras.layers.Dense(1)

    def call(self, x):
        return self.dense(x)

    def train_step(self, data):
        self.record(np.asarray(data[0])[:, 0].astype(int).tolist())
        return {"loss": 0.0}


class _CutAt(keras.callbacks.Callback):
    """Raises at the start of epoch ``epoch``, as a kill would end the process there."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise KeyboardInterrupt


@pytest.mark.parametrize("length", ["known", "unknown"])
def test_a_resumed_fit_sees_the_batches_of_the_uninterrupted_run(tmp_path, length):
    """A seeded reshuffling tf.data shuffle draws a new order per iterator: the resumed
    epochs get the orders the uninterrupted run had (:class:`training.ReplayDataOrder`),
    whether the dataset's length is known to Keras or not."""
    import tensorflow as tf

    def dataset():
        data = tf.data.Dataset.range(16).map(lambda i: (tf.cast([i], "float32"), 0.0))
        data = data.shuffle(16, seed=1, reshuffle_each_iteration=True).batch(8)
        return data.filter(lambda x, y: True) if length == "unknown" else data

    def run(seen, epochs, folder, callbacks=()):
        training.set_seed(0)
        model = _Recorder(seen)
        model.compile("sgd", "mse", run_eagerly=True)
        model(np.zeros((1, 1)))
        training.fit(
            model, dataset(), epochs=epochs, verbose=0, checkpoint_dir=folder, callbacks=callbacks
        )

    straight, resumed = [], []
    run(straight, 5, tmp_path / "straight")
    with pytest.raises(KeyboardInterrupt):
        run(resumed, 5, tmp_path / "cut", [_CutAt(3)])
    assert resumed == straight[:6]  # 3 epochs of 2 batches
    run(resumed, 5, tmp_path / "cut")
    assert len({str(straight[i : i + 2]) for i in range(0, 10, 2)}) == 5  # 5 orders
    assert resumed == straight


def test_a_resumed_fit_repeats_the_uninterrupted_losses_dropout_included(tmp_path):
    """Weights, optimizer, data order and the Dropout masks' seed generator state all come
    back (:class:`training.KeepSeedGenerators`): the resumed epochs' losses are the
    uninterrupted run's, bit for bit."""
    import tensorflow as tf

    x = np.random.default_rng(0).random((32, 4)).astype("float32")
    y = (x.sum(axis=1) > 2).astype("int32")

    def run(epochs, folder, callbacks=()):
        training.set_seed(0)
        model = keras.Sequential(
            [
                keras.Input((4,)),
                keras.layers.Dense(16, activation="relu"),
                keras.layers.Dropout(0.5),
                keras.layers.Dense(2, activation="softmax"),
            ]
        )
        model.compile("adam", "sparse_categorical_crossentropy")
        data = tf.data.Dataset.from_tensor_slices((x, y))
        data = data.shuffle(32, seed=1, reshuffle_each_iteration=True).batch(8)
        history = training.fit(
            model, data, epochs=epochs, verbose=0, checkpoint_dir=folder, callbacks=callbacks
        )
        return history.history["loss"]

    straight = run(5, tmp_path / "straight")
    with pytest.raises(KeyboardInterrupt):
        run(5, tmp_path / "cut", [_CutAt(3)])
    assert (tmp_path / "cut" / "backup" / training.KeepSeedGenerators.FILE).is_file()
    assert run(5, tmp_path / "cut") == straight[3:]
