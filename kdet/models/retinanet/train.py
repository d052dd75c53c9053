"""Train a KerasHub RetinaNet on a ``RecordSet`` with ``kdet.training.fit``.

Example:
    >>> model, history = train_retinanet(records.split("train"), image_size=128,
    ...                                  batch_size=8, epochs=30)  # doctest: +SKIP
"""

from __future__ import annotations

import math
import os

import keras
import tensorflow as tf

from kdet import distribute
from kdet.datasets.records import RecordSet
from kdet.models.retinanet.builder import build_retinanet, image_size_pair
from kdet.models.retinanet.inputs import as_keras_hub, evaluation_dataset, training_dataset
from kdet.training import build_for_strategy, configure_precision, fit, set_seed, training_callbacks


def compile_retinanet(model, *, learning_rate: float = 1e-3, jit_compile: bool = False):
    """KerasHub's RetinaNet losses (focal + smooth L1) with AdamW and gradient clipping."""
    model.compile(
        optimizer=keras.optimizers.AdamW(learning_rate, weight_decay=1e-4, global_clipnorm=10.0),
        box_loss="auto",
        classification_loss="auto",
        jit_compile=jit_compile,
    )
    return model


def train_retinanet(
    train_records: RecordSet,
    val_records: RecordSet | None = None,
    *,
    image_size=128,
    batch_size: int = 8,
    epochs: int = 30,
    backbone: str = "resnet_tiny",
    weights: str | os.PathLike | None = None,
    head_conv_layers: int = 2,
    learning_rate: float = 1e-3,
    augment: bool = True,
    precision: str = "auto",
    jit_compile: bool = False,
    max_boxes: int = 32,
    seed: int = 0,
    checkpoint_dir: str | os.PathLike | None = None,
    history_csv: str | os.PathLike | None = None,
    log_to_mlflow: bool = False,
    strategy: str | tf.distribute.Strategy = "auto",
    verbose: int | str = 2,
):
    """Build, compile and fit a RetinaNet detector.

    Args:
        train_records, val_records: training and (optional) validation records.
        image_size: int or ``(height, width)``, multiples of 32.
        batch_size: images per step per replica.
        epochs: as in ``keras.Model.fit``.
        backbone, weights, head_conv_layers: passed to :func:`build_retinanet`.
        learning_rate: AdamW's learning rate.
        augment: kdet's default augmentation (flip + random scale).
        precision: ``"auto"``, ``"float32"``, ``"mixed_bfloat16"``, ``"mixed_float16"``
            (:func:`kdet.training.configure_precision`).
        jit_compile: XLA-compile the train step.
        max_boxes: boxes per image after padding.
        seed: seeds weights, shuffling and augmentation.
        checkpoint_dir: resumable end-of-epoch backup (:func:`kdet.training.fit`).
        history_csv, log_to_mlflow: see :func:`kdet.training.training_callbacks`.
        strategy: a ``tf.distribute`` strategy or its name (:mod:`kdet.distribute`).
        verbose: ``fit`` verbosity.

    Returns:
        ``(model, history)``: the fitted detector and ``History.history`` (plus
        ``precision``).
    """
    size = image_size_pair(image_size)
    policy = configure_precision(precision)
    strategy = distribute.get_strategy(strategy)
    global_batch = distribute.global_batch_size(batch_size, strategy)
    set_seed(seed)
    if len(train_records) < global_batch:
        raise ValueError(
            f"{train_records.root}: {len(train_records)} training images are fewer than "
            f"one batch of {global_batch}"
        )
    train = training_dataset(
        train_records,
        image_size=size,
        batch_size=global_batch,
        augment=augment,
        max_boxes=max_boxes,
        seed=seed,
    )
    validation = None
    if val_records is not None and len(val_records):
        validation = as_keras_hub(
            evaluation_dataset(
                val_records, image_size=size, batch_size=global_batch, max_boxes=max_boxes
            )
        )

    def build():
        model = build_retinanet(
            num_classes=len(train_records.class_names),
            image_size=size,
            weights=weights,
            backbone=backbone,
            head_conv_layers=head_conv_layers,
        )
        return compile_retinanet(model, learning_rate=learning_rate, jit_compile=jit_compile)

    model, _ = build_for_strategy(build, strategy=strategy, batch_size=batch_size)
    callbacks = training_callbacks(
        monitor="val_loss" if validation is not None else "loss",
        history_csv=history_csv,
        log_to_mlflow=log_to_mlflow,
        chief=distribute.is_chief(strategy),
    )
    history = fit(
        model,
        train,
        validation_data=validation,
        epochs=epochs,
        checkpoint_dir=checkpoint_dir if distribute.is_chief(strategy) else None,
        callbacks=callbacks,
        verbose=verbose,
    )
    result = dict(history.history)
    result["precision"] = policy
    if not all(math.isfinite(v) for v in result["loss"]):
        raise FloatingPointError(f"RetinaNet training diverged: loss={result['loss']}")
    return model, result
