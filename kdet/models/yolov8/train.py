"""Train a YOLOv8 detector on a ``RecordSet`` with a named recipe.

The device is TensorFlow's: with a visible GPU, Keras places the model there, and
``precision="auto"`` picks ``mixed_float16`` (``mixed_bfloat16`` on AMX CPUs, float32
otherwise), so the same call trains on a laptop CPU or a GPU with no code change;
``strategy="auto"`` (see :mod:`kdet.distribute`) trains on every GPU of the machine, or
on every machine of a ``TF_CONFIG`` cluster.

Example:
    >>> model, history = train_yolov8(records.split("train"), records.split("test"),
    ...                               image_size=128, batch_size=8, epochs=30)  # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
import time

import keras
import tensorflow as tf

from kdet import distribute
from kdet.datasets.records import RecordSet
from kdet.models.yolov8.builder import build_yolov8, image_size_pair, initialise_from
from kdet.models.yolov8.inputs import evaluation_dataset, training_dataset
from kdet.models.yolov8.recipe import compile_yolov8, get_recipe
from kdet.training import (
    build_for_strategy,
    configure_precision,
    fit,
    set_seed,
    training_callbacks,
)


class ThroughputLogger(keras.callbacks.Callback):
    """Records training images per second for each epoch (``history["images_per_s"]``)."""

    def __init__(self, batch_size: int):
        super().__init__()
        self.batch_size = batch_size
        self.images_per_s: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()
        self._steps = 0

    def on_train_batch_end(self, batch, logs=None):
        self._steps += 1

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self._start
        self.images_per_s.append(self._steps * self.batch_size / max(seconds, 1e-9))


def as_pairs(batches: tf.data.Dataset) -> tf.data.Dataset:
    """KerasCV batch dicts as ``(images, bounding_boxes)`` pairs, the same data.

    Under a strategy, Keras builds the model from a first batch it unpacks as ``(x, y)``;
    a ``{"images", "bounding_boxes"}`` dict would be taken for the input ``x`` whole.
    """
    return batches.map(lambda batch: (batch["images"], batch["bounding_boxes"]))


def train_yolov8(
    train_records: RecordSet,
    val_records: RecordSet | None = None,
    *,
    recipe: str = "kdet",
    image_size=320,
    batch_size: int = 8,
    epochs: int = 30,
    backbone_size: str = "xs",
    weights: str | os.PathLike | None = None,
    init_from: str | os.PathLike | None = None,
    bounding_box_format: str = "xyxy",
    precision: str = "auto",
    jit_compile: bool = False,
    max_boxes: int = 32,
    seed: int = 0,
    checkpoint_dir: str | os.PathLike | None = None,
    history_csv: str | os.PathLike | None = None,
    log_to_mlflow: bool = False,
    model_options: dict | None = None,
    input_options: dict | None = None,
    compile_options: dict | None = None,
    strategy: str | tf.distribute.Strategy = "auto",
    verbose: int | str = 2,
):
    """Build, compile and fit a YOLOv8 detector.

    Args:
        train_records, val_records: training and (optional) validation records; the
            number of classes is ``len(train_records.class_names)``.
        recipe: ``"kdet"`` or ``"keras_io"`` (see ``kdet.models.yolov8.recipe``).
        image_size: int or ``(height, width)``, multiples of 32.
        batch_size: images per step **per replica** (a step takes ``batch_size x
            replicas`` images, split between the replicas).
        epochs: as in ``keras.Model.fit``.
        backbone_size, weights, bounding_box_format: passed to ``build_yolov8``.
        init_from: a trained YOLOv8 ``.keras`` file (e.g. on another dataset) whose backbone
            and neck weights start the new model; its head is new (see
            ``builder.initialise_from``). ``None``: from scratch.
        precision: ``"auto"`` or ``"float32"`` (both float32: KerasCV's YOLOv8 loss fails
            under a mixed policy, measured on an AMX CPU where ``auto`` would pick bf16).
        jit_compile: XLA-compile the train step.
        max_boxes: boxes per image after padding (extra boxes are dropped).
        seed: seeds weights, shuffling and augmentation.
        checkpoint_dir: folder of the resumable end-of-epoch backup (``kdet.training.fit``).
        history_csv, log_to_mlflow: see ``kdet.training.training_callbacks``.
        model_options, input_options, compile_options: override entries of the recipe's
            ``model``, ``inputs`` and ``compile`` groups.
        strategy: ``"auto"``, ``"default"``, ``"mirrored"``, ``"multi_worker"`` or a
            ``tf.distribute.Strategy``: the model, its optimizer (and EMA) are built in
            its scope; on a non-chief worker no checkpoint, CSV or MLflow callback runs.
        verbose: ``keras.Model.fit`` verbosity (2: one line per epoch).

    Returns:
        ``(model, history)``: the fitted ``YOLOV8Detector`` (EMA weights when the recipe
        uses them) and the ``History.history`` dict plus ``images_per_s`` per epoch.
    """
    size = image_size_pair(image_size)
    settings = get_recipe(recipe)
    settings["model"].update(model_options or {})
    settings["inputs"].update(input_options or {})
    settings["compile"].update(compile_options or {})
    if precision not in ("auto", "float32"):
        # keras-cv 0.9 decodes boxes with float32 constants inside the loss, which fails
        # under a mixed policy (bfloat16 or float16 activations).
        raise ValueError(
            "KerasCV's YOLOv8 trains in float32 only (its loss mixes float32 constants "
            f"with the activations). Received: precision={precision!r}"
        )
    policy = configure_precision("float32")
    strategy = distribute.get_strategy(strategy)
    global_batch = distribute.global_batch_size(batch_size, strategy)
    set_seed(seed)
    train = training_dataset(
        train_records,
        image_size=size,
        batch_size=global_batch,
        max_boxes=max_boxes,
        seed=seed,
        bounding_box_format=bounding_box_format,
        **settings["inputs"],
    )
    steps_per_epoch = len(train_records) // global_batch
    if steps_per_epoch < 1:
        raise ValueError(
            f"{train_records.root}: {len(train_records)} training images are fewer than "
            f"one batch of {global_batch} ({batch_size} x {strategy.num_replicas_in_sync} "
            "replicas)"
        )
    validation = None
    if val_records is not None and len(val_records):
        validation = evaluation_dataset(
            val_records,
            image_size=size,
            batch_size=global_batch,
            max_boxes=max_boxes,
            bounding_box_format=bounding_box_format,
        )

    def build():
        model = build_yolov8(
            num_classes=len(train_records.class_names),
            image_size=size,
            backbone_size=backbone_size,
            weights=weights,
            bounding_box_format=bounding_box_format,
            **settings["model"],
        )
        if init_from is not None:
            initialise_from(model, init_from)
        compile_yolov8(
            model,
            total_steps=steps_per_epoch * epochs,
            jit_compile=jit_compile,
            **settings["compile"],
        )
        return model

    model, _ = build_for_strategy(build, strategy=strategy, batch_size=batch_size)
    throughput = ThroughputLogger(global_batch)
    callbacks = [throughput] + training_callbacks(
        monitor="val_loss" if validation is not None else "loss",
        history_csv=history_csv,
        log_to_mlflow=log_to_mlflow,
        chief=distribute.is_chief(strategy),
    )
    history = fit(
        model,
        as_pairs(train),
        validation_data=None if validation is None else as_pairs(validation),
        epochs=epochs,
        checkpoint_dir=checkpoint_dir if distribute.is_chief(strategy) else None,
        callbacks=callbacks,
        verbose=verbose,
    )
    result = dict(history.history)
    result["images_per_s"] = throughput.images_per_s
    result["precision"] = policy
    if not all(math.isfinite(v) for v in result["loss"]):
        raise FloatingPointError(f"YOLOv8 training diverged: loss={result['loss']}")
    return model, result
