"""What every training stage shares: precision, seeds, devices, callbacks, loss plots.

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
        model.fit(train, ...)

On one device this is the plain build + compile (``global_batch == batch_size``).

Example:
    >>> policy = configure_precision("float32")
    >>> callbacks = training_callbacks(checkpoint_dir=None, log_to_mlflow=False)
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path

import keras
import tensorflow as tf

from kdet import distribute

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
    checkpoint_dir: str | os.PathLike | None = None,
    early_stopping_patience: int | None = None,
    monitor: str = "val_loss",
    history_csv: str | os.PathLike | None = None,
    log_to_mlflow: bool = True,
) -> list[keras.callbacks.Callback]:
    """Keras callbacks for a training stage.

    Args:
        checkpoint_dir: where ``last.keras`` (every epoch) and ``best.keras`` (best
            ``monitor``) go; ``None`` for no checkpoints.
        early_stopping_patience: epochs without improvement of ``monitor`` before stopping
            (best weights restored); ``None`` to train all epochs.
        monitor: the logged quantity to watch.
        history_csv: a CSV of per-epoch metrics (DVC plots read it); ``None`` for none.
        log_to_mlflow: log per-epoch metrics to the active MLflow run.
    """
    callbacks: list[keras.callbacks.Callback] = []
    if checkpoint_dir is not None:
        Path(checkpoint_dir).mkdir(parents=True, exist_ok=True)
        callbacks += [
            keras.callbacks.ModelCheckpoint(Path(checkpoint_dir) / "last.keras"),
            keras.callbacks.ModelCheckpoint(
                Path(checkpoint_dir) / "best.keras", monitor=monitor, save_best_only=True
            ),
        ]
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
        import mlflow.keras

        callbacks.append(mlflow.keras.MlflowCallback())
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
