"""What every training stage shares: precision, seeds, devices, callbacks, loss plots,
and :func:`fit`, a ``model.fit`` that survives interruption.

Every family's training function takes ``strategy="auto"`` (see :mod:`kdet.distribute`)
and ``batch_size`` per replica, and builds its model through :func:`build_for_strategy`::

    def train_my_family(records, *, batch_size=16, strategy="auto", **options):
        model, global_batch = build_for_strategy(
            functools.partial(get_model, "my_family", **model_options),
            strategy=strategy,
            batch_size=batch_size,
            optimizer=keras.optimizers.Adam(1e-3),
            loss={"bounding_box": "mse", "class_label": "categorical_crossentropy"},
        )
        train = build_pipeline(examples, batch_size=global_batch, ...)
        fit(model, train, epochs=epochs, checkpoint_dir=...)  # or model.fit(train, ...)

On one device this is the plain build + compile (``global_batch == batch_size``).

Example:
    >>> policy = configure_precision("float32")
    >>> callbacks = training_callbacks(log_to_mlflow=False)
    >>> history = fit(model, train, epochs=30, checkpoint_dir="ckpt")  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import signal
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from kdet import atomic, distribute
from kdet.errors import KdetError

logger = logging.getLogger(__name__)

PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")


@functools.cache
def cpu_has_amx_bf16() -> bool:
    """Whether this CPU has AMX-BF16 tiles (Sapphire Rapids and later)."""
    try:
        with open("/proc/cpuinfo") as f:
            return "amx_bf16" in f.read()
    except OSError:
        return False


def has_gpu() -> bool:
    """Whether TensorFlow sees a GPU."""
    return bool(tf.config.list_physical_devices("GPU"))


def configure_precision(precision: str = "auto") -> str:
    """Set Keras' global dtype policy and return its name.

    ``"auto"`` picks ``mixed_float16`` on a GPU, ``mixed_bfloat16`` on a CPU with AMX-BF16
    and ``float32`` otherwise. Measure per backbone before relying on it: on this CPU
    VGG16 is much faster in bf16 but MobileNetV2 is slower. Models built afterwards keep
    float32 outputs (their last layers set ``dtype="float32"``).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}. Received: {precision=}")
    if precision == "auto":
        if has_gpu():
            precision = "mixed_float16"
        elif cpu_has_amx_bf16():
            precision = "mixed_bfloat16"
        else:
            precision = "float32"
    keras.mixed_precision.set_global_policy(precision)
    return precision


def build_for_strategy(
    build_model: Callable[[], keras.Model],
    *,
    strategy: str | tf.distribute.Strategy = "auto",
    batch_size: int,
    **compile_kwargs,
) -> tuple[keras.Model, int]:
    """Build and compile a model under a ``tf.distribute`` strategy; the training
    functions' one entry point for their ``strategy=`` argument.

    Args:
        build_model: returns the model, uncompiled or compiled by itself (it is called
            inside the strategy's scope).
        strategy: ``"auto"``, ``"default"``, ``"mirrored"``, ``"multi_worker"`` or a
            ``tf.distribute.Strategy`` (:func:`kdet.distribute.get_strategy`).
        batch_size: examples per replica per step.
        **compile_kwargs: for ``model.compile``; optimizer and metric objects made
            before the call are re-made inside the scope
            (:func:`kdet.distribute.build_and_compile`).

    Returns:
        ``(model, global_batch_size)``: batch the training pipeline with
        ``global_batch_size`` (= ``batch_size`` x replicas) and call ``model.fit``.

    Example:
        >>> model, global_batch = build_for_strategy(
        ...     lambda: keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)]),
        ...     strategy="default",
        ...     batch_size=8,
        ...     optimizer="sgd",
        ...     loss="mse",
        ... )
        >>> global_batch
        8
    """
    strategy = distribute.get_strategy(strategy)
    model = distribute.build_and_compile(strategy, build_model, **compile_kwargs)
    return model, distribute.global_batch_size(batch_size, strategy)


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow (``keras.utils.set_random_seed``)."""
    keras.utils.set_random_seed(seed)


def training_callbacks(
    early_stopping_patience: int | None = None,
    monitor: str = "val_loss",
    history_csv: str | os.PathLike | None = None,
    log_to_mlflow: bool = True,
    chief: bool = True,
) -> list[keras.callbacks.Callback]:
    """Keras callbacks for a training stage.

    Args:
        early_stopping_patience: epochs without improvement of ``monitor`` before stopping
            (best weights restored); ``None`` to train all epochs.
        monitor: the logged quantity to watch.
        history_csv: a CSV of per-epoch metrics (DVC plots read it); ``None`` for none.
        log_to_mlflow: log per-epoch metrics to the active MLflow run (through
            :class:`kdet.tracking.MetricsCallback`: a tracking server going away mid-run
            does not stop training).
        chief: whether this process writes outputs (:func:`kdet.distribute.is_chief`);
            on the other workers of a multi-worker cluster no CSV or MLflow callback is
            added (they train along, the chief writes for all).

    Checkpoints are :func:`fit`'s: a resumable backup at the end of every epoch.
    """
    callbacks: list[keras.callbacks.Callback] = []
    if not chief:
        history_csv, log_to_mlflow = None, False
    if early_stopping_patience is not None:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor=monitor, patience=early_stopping_patience, restore_best_weights=True
            )
        )
    if history_csv is not None:
        Path(history_csv).parent.mkdir(parents=True, exist_ok=True)
        callbacks.append(keras.callbacks.CSVLogger(str(history_csv)))
    if log_to_mlflow:
        from kdet.tracking import MetricsCallback

        callbacks.append(MetricsCallback())
    return callbacks


def plot_history(history: dict[str, list[float]], title: str = "training"):
    """A matplotlib figure of every loss curve in a Keras ``history.history`` dict."""
    import matplotlib.pyplot as plt

    losses = sorted(k for k in history if k.endswith("loss") and not k.startswith("val_"))
    fig, axes = plt.subplots(1, len(losses), figsize=(4 * len(losses), 3), squeeze=False)
    for ax, name in zip(axes[0], losses, strict=True):
        ax.plot(history[name], label="train")
        if f"val_{name}" in history:
            ax.plot(history[f"val_{name}"], label="validation")
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    return fig


BACKUP_FOLDER = "backup"
HISTORY_FOLDER = "history"  # copies of the CSVLogger files, beside the backup


class TrainingInterrupted(KdetError):
    """Training stopped on a signal after saving a checkpoint; ``fit(..., resume=True)``
    continues from it.

    Attributes:
        where: the checkpoint folder.
        epoch: number of epochs completed (the resumed run starts at this epoch).
        history: the ``keras.callbacks.History`` of the interrupted run.
    """

    def __init__(self, where, reason, epoch: int = 0, history=None):
        super().__init__(where, reason)
        self.epoch = epoch
        self.history = history

    def __reduce__(self):
        return (type(self), (self.where, self.reason, self.epoch))


class StopOnSignal(keras.callbacks.Callback):
    """Turns SIGINT/SIGTERM into "finish this epoch, checkpoint, stop".

    The first signal lets the running epoch end (so the checkpoint holds whole epochs and
    a resumed run repeats nothing), then sets ``model.stop_training``. A second signal
    restores the previous handler and delivers the signal again, aborting at once (the
    last end-of-epoch checkpoint stays). Handlers are installed for the duration of
    ``fit`` only, and only in the main thread (Python allows no other).

    Example:
        >>> stopper = StopOnSignal()
        >>> model.fit(x, y, epochs=100, callbacks=[stopper])  # doctest: +SKIP
        >>> stopper.received  # doctest: +SKIP
        2
    """

    def __init__(self, signals: Sequence[int] = (signal.SIGINT, signal.SIGTERM)):
        super().__init__()
        self.signals = tuple(signals)
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum, frame):
        if self.received is None:
            self.received = signum
            logger.warning(
                "%s received: finishing the current epoch, then saving a checkpoint "
                "(send it again to abort now)",
                signal.Signals(signum).name,
            )
            return
        self.restore()
        signal.raise_signal(signum)

    def restore(self):
        """Put back the signal handlers that were installed before training."""
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def on_train_begin(self, logs=None):
        self.received = None
        if threading.current_thread() is not threading.main_thread():
            logger.warning("fit runs outside the main thread: SIGINT/SIGTERM are not handled")
            return
        for signum in self.signals:
            self._previous[signum] = signal.signal(signum, self._handle)

    def on_epoch_end(self, epoch, logs=None):
        if self.received is not None:
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        self.restore()


def fit(
    model: keras.Model,
    x=None,
    y=None,
    *,
    epochs: int,
    checkpoint_dir: str | os.PathLike | None,
    resume: bool = True,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    signals: Sequence[int] = (signal.SIGINT, signal.SIGTERM),
    **fit_kwargs,
) -> keras.callbacks.History:
    """``model.fit`` that checkpoints every epoch and resumes after an interruption.

    The training state (weights, optimizer state, epoch) is backed up at the end of every
    epoch in ``checkpoint_dir/backup`` by ``keras.callbacks.BackupAndRestore`` (keeping
    the previous backup too, in case a kill lands during a write). SIGINT or SIGTERM
    stops training after the current epoch (see :class:`StopOnSignal`) and raises
    :class:`TrainingInterrupted`, so a script or DVC stage exits non-zero instead of
    recording a half-trained model. Run the same call again with ``resume=True`` and
    training continues at the first epoch not completed; a completed run deletes the
    backup. With ``resume=False`` an old backup is deleted and training starts over.

    Resuming restores the model and optimizer, and, when ``x`` is a ``tf.data.Dataset``,
    the data order: the dataset is gone through as ``model.fit`` went through it in each
    completed epoch (one pass of the input pipeline per epoch, not of the model; see
    :class:`ReplayDataOrder`), which moves its seeded shuffles to where the uninterrupted
    run had them, so the resumed epochs see the same batches; and the state of the model's
    random seed generators (its ``Dropout`` masks; see :class:`KeepSeedGenerators`), which
    the backup leaves out. The state of other callbacks is not restored; ``CSVLogger``
    callbacks are switched to append so the history file keeps the earlier epochs. Their
    files are also copied into ``checkpoint_dir/history`` after every epoch and put back on
    resume if they were deleted or cut short meanwhile (``dvc repro`` deletes a stage's
    outputs, the history among them, before running it).

    Args:
        model: a built and compiled Keras model.
        x: training data (as for ``model.fit``).
        y: targets, when ``x`` holds inputs only.
        epochs: total number of epochs, counting those done before an interruption.
        checkpoint_dir: folder of the run's checkpoints; the backup goes in
            ``checkpoint_dir/backup``. ``None``: no backup (signals still stop training
            after the epoch).
        resume: continue from an existing backup (``False``: start over).
        callbacks: further Keras callbacks (e.g. :func:`training_callbacks`).
        signals: signals that stop training gracefully (empty: none).
        **fit_kwargs: other ``model.fit`` arguments (``validation_data``, ...).

    Returns:
        The ``History`` of this call; ``history.epoch[0]`` is the epoch it started at.

    Raises:
        TrainingInterrupted: a signal stopped training before the last epoch.

    Example:
        >>> history = fit(model, train_ds, epochs=20, checkpoint_dir="data/models/r1/ckpt")
        ... # doctest: +SKIP
        >>> history.epoch[0]  # 0, or the first epoch not done by an interrupted run
        ... # doctest: +SKIP
    """
    callbacks = list(callbacks)
    backup_dir = None
    if checkpoint_dir is not None:
        backup_dir = Path(checkpoint_dir) / BACKUP_FOLDER
        if not resume and backup_dir.exists():
            shutil.rmtree(backup_dir)
        history_dir = Path(checkpoint_dir) / HISTORY_FOLDER
        loggers = [c for c in callbacks if isinstance(c, keras.callbacks.CSVLogger)]
        if not backup_dir.exists():
            shutil.rmtree(history_dir, ignore_errors=True)
        else:
            logger.warning("resuming training from the checkpoint in %s", backup_dir)
            for index, csv_logger in enumerate(loggers):
                _restore_history(history_dir / f"{index}.csv", Path(csv_logger.filename))
                csv_logger.append = True
        backup = keras.callbacks.BackupAndRestore(
            str(backup_dir), double_checkpoint=True, delete_checkpoint=False
        )
        # (with steps_per_epoch Keras keeps one iterator across epochs: nothing to replay)
        replayed = None if "steps_per_epoch" in fit_kwargs else x
        first_epoch = fit_kwargs.get("initial_epoch", 0)
        random_state = [
            ReplayDataOrder(replayed, backup_dir, first_epoch),
            KeepSeedGenerators(backup_dir),
        ]
        callbacks = [backup, *random_state, *callbacks]
        callbacks.append(KeepHistory(loggers, history_dir))
    if isinstance(x, tf.data.Dataset):
        build_training_variables(model, x.element_spec)
    stopper = StopOnSignal(signals)
    try:
        history = model.fit(x, y, epochs=epochs, callbacks=[*callbacks, stopper], **fit_kwargs)
    finally:  # Keras skips on_train_end when fit raises
        stopper.restore()
    done = history.epoch[-1] + 1 if history.epoch else epochs
    if stopper.received is not None and done < epochs:
        name = signal.Signals(stopper.received).name
        raise TrainingInterrupted(
            backup_dir or "training",
            f"{name} stopped training after epoch {done} of {epochs}; "
            "run again with resume=True to continue",
            epoch=done,
            history=history,
        )
    if backup_dir is not None:
        shutil.rmtree(backup_dir, ignore_errors=True)
        shutil.rmtree(Path(checkpoint_dir) / HISTORY_FOLDER, ignore_errors=True)
    return history


def build_training_variables(model: keras.Model, element_spec) -> None:
    """Create the optimizer's, the loss's and the metrics' variables before ``model.fit``.

    Without a distribution strategy Keras creates them inside the first trace of the
    train step, and ``tf.function`` then traces the step a second time. For YOLOv8 that
    second trace costs as much as the first (tens of seconds on 2 cores). Here they are
    made eagerly from one batch of zeros shaped like ``element_spec`` (``(x, y)`` or
    ``(x, y, sample_weight)``). Left to Keras: a model built under a strategy (Keras
    builds it before tracing) and a spec that is not all dense tensors.

    Example:
        >>> build_training_variables(model, train.element_spec)  # doctest: +SKIP
        >>> model.optimizer.built  # doctest: +SKIP
        True
    """
    if model.distribute_strategy is not tf.distribute.get_strategy():
        return
    if not isinstance(element_spec, tuple) or len(element_spec) < 2:
        return
    specs = tf.nest.flatten(element_spec)
    if not all(isinstance(spec, tf.TensorSpec) and spec.shape.rank is not None for spec in specs):
        return
    if model.optimizer is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    x, y = tf.nest.map_structure(
        lambda spec: tf.zeros([1 if d is None else d for d in spec.shape], spec.dtype),
        element_spec[:2],
    )
    y_pred = model(x, training=False)
    model.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=None)
    model.compute_metrics(x, y, y_pred, sample_weight=None)
    model.reset_metrics()


class ReplayDataOrder(keras.callbacks.Callback):
    """At the start of a resumed training, goes through ``dataset`` as ``model.fit`` did in
    the epochs the backup in ``backup_dir`` completed, so that its seeded reshuffling
    ``tf.data`` shuffles give the resumed epochs the orders the uninterrupted run had (a
    fresh process would otherwise start over at epoch 0's order). Placed after
    ``BackupAndRestore``, which has then read its backup (the older one if the latest was
    cut short). Does nothing when ``dataset`` is not a ``tf.data.Dataset`` of finite length
    or nothing was completed.

    Every new iterator of a shuffle with a seed and ``reshuffle_each_iteration`` draws the
    next order. Keras 3's epoch iterator (``keras/src/trainers/epoch_iterator.py``) makes
    one at the start of each epoch and reads it to the end, and, when the dataset's length
    is known, another at the end that is never read; this does the same (reading, so that
    stateful random ops in the pipeline advance as they did). A change in that pattern
    fails ``tests/test_training.py``'s resumed-order test.

    Example:
        >>> callbacks = [backup, ReplayDataOrder(train, "ckpt/backup")]  # doctest: +SKIP
    """

    def __init__(self, dataset, backup_dir, first_epoch: int = 0):
        super().__init__()
        self.dataset = dataset
        self.backup_dir = Path(backup_dir)
        self.first_epoch = first_epoch  # model.fit's initial_epoch: epochs before this call

    def on_train_begin(self, logs=None):
        done = (_backed_up_epochs(self.backup_dir) or 0) - self.first_epoch
        if not isinstance(self.dataset, tf.data.Dataset) or done <= 0:
            return
        length = int(self.dataset.cardinality())
        if length == tf.data.INFINITE_CARDINALITY or length == 0:
            return
        logger.info("replaying the data order of %d completed epochs", done)
        for _ in range(done):
            for _ in self.dataset:
                pass
            if length > 0:  # known length: Keras's unread end-of-epoch iterator
                iter(self.dataset)


class KeepSeedGenerators(keras.callbacks.Callback):
    """Keeps the state of the model's seed generators (``model.variables`` that are not
    ``model.weights``: what draws ``Dropout`` masks), which ``BackupAndRestore``'s weights
    file leaves out, beside the backup in ``backup_dir`` after every epoch, and puts it
    back at the start of a resumed training; without it the resumed epochs would draw the
    masks of the first epochs again. Placed after ``BackupAndRestore`` (it reads the epoch
    the backup restored); the states of that epoch and the one before are kept, as the
    backup keeps its previous copy. A kill between the two writes costs only this: the
    resumed run's masks differ from an uninterrupted run's, with a warning.

    Example:
        >>> callbacks = [backup, KeepSeedGenerators("ckpt/backup")]  # doctest: +SKIP
    """

    FILE = "seed_generators.json"

    def __init__(self, backup_dir):
        super().__init__()
        self.backup_dir = Path(backup_dir)

    def _states(self) -> list:
        weights = {id(v) for v in self.model.weights}
        return [v for v in self.model.variables if id(v) not in weights]

    def _saved(self) -> dict:
        path = self.backup_dir / self.FILE
        return json.loads(path.read_text()) if path.exists() else {}

    def on_train_begin(self, logs=None):
        states = self._states()
        done = _backed_up_epochs(self.backup_dir)
        if not states or done is None:
            return
        saved = self._saved().get(str(done))
        # matched by position: a model built twice in one process has other layer names
        if saved is None or [list(v.shape) for v in states] != [
            list(np.shape(s["value"])) for s in saved
        ]:
            logger.warning(
                "no seed generator state kept for epoch %s: the resumed epochs draw other "
                "random numbers (Dropout masks) than an uninterrupted run",
                done,
            )
            return
        for variable, state in zip(states, saved, strict=True):
            variable.assign(keras.ops.convert_to_tensor(state["value"], variable.dtype))

    def on_epoch_end(self, epoch, logs=None):
        states = self._states()
        if not states:
            return
        kept = {k: v for k, v in self._saved().items() if int(k) == epoch}  # the one before
        kept[str(epoch + 1)] = [
            {"path": v.path, "value": keras.ops.convert_to_numpy(v).tolist()} for v in states
        ]
        atomic.write_text(self.backup_dir / self.FILE, json.dumps(kept))


def _backed_up_epochs(backup_dir: Path) -> int | None:
    """The epochs completed by the backup ``BackupAndRestore`` keeps in ``backup_dir``
    (``None``: no backup)."""
    metadata = backup_dir / "training_metadata.json"  # BackupAndRestore's file
    return int(json.loads(metadata.read_text())["epoch"]) if metadata.exists() else None


class KeepHistory(keras.callbacks.Callback):
    """Copies each ``CSVLogger``'s file to ``folder/<index>.csv`` at the end of every epoch
    (placed after the loggers, so the epoch's row is in), for :func:`fit` to put back.

    Example:
        >>> csv_logger = keras.callbacks.CSVLogger("history.csv")
        >>> callbacks = [csv_logger, KeepHistory([csv_logger], "ckpt/history")]
    """

    def __init__(self, loggers: Sequence[keras.callbacks.CSVLogger], folder):
        super().__init__()
        self.loggers = list(loggers)
        self.folder = Path(folder)

    def on_epoch_end(self, epoch, logs=None):
        self.folder.mkdir(parents=True, exist_ok=True)
        for index, csv_logger in enumerate(self.loggers):
            if Path(csv_logger.filename).exists():
                atomic.copy_file(Path(csv_logger.filename), self.folder / f"{index}.csv")


def _restore_history(copy: Path, path: Path) -> None:
    """Put the checkpoint's ``copy`` of a history file back if ``path`` has fewer rows."""
    if copy.exists() and _line_count(path) < _line_count(copy):
        logger.warning("restoring %s from the checkpoint's copy %s", path, copy)
        atomic.copy_file(copy, path)


def _line_count(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0
