"""Training of the single-box models, with the frozen-backbone feature cache.

Example:
    >>> result = train_single_box(records, model="bbox_regressor",
    ...                           class_names=["airplanes"], image_size=(224, 224),
    ...                           model_options={"weights": "imagenet"}, epochs=25,
    ...                           feature_cache_dir="data/features")  # doctest: +SKIP
    >>> result.model.save("model.keras")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import math
import os
import tempfile
import time
from collections.abc import Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf

from kdet import distribute
from kdet.datasets.records import RecordSet
from kdet.models.registry import get_builder
from kdet.models.single_box.builder import backbone_layer, split_at_backbone, start_at_box
from kdet.models.single_box.data import SingleBoxData, load_single_box_data, make_dataset
from kdet.models.single_box.feature_cache import FeatureCache
from kdet.training import (
    build_for_strategy,
    configure_precision,
    fit,
    set_seed,
    training_callbacks,
)


@dataclasses.dataclass
class TrainResult:
    """What :func:`train_single_box` returns.

    Attributes:
        model: the trained model (images -> outputs).
        history: Keras' per-epoch ``history.history``.
        data: every record of the dataset at the model's input size.
        class_names: the model's classes (ids index this list).
        train_rows: rows of ``data`` used for fitting.
        val_rows: rows of ``data`` used for validation (from the training split).
        features: backbone features of every row of ``data`` when the cache was used.
        info: ``precision``, ``feature_cache`` (``"off"``, ``"hit"``, ``"miss"``),
            ``load_seconds``, ``feature_seconds``, ``fit_seconds``, ``epochs_run``,
            ``replicas`` and ``global_batch_size`` (examples per step, all replicas).
    """

    model: keras.Model
    history: dict[str, list[float]]
    data: SingleBoxData
    class_names: list[str]
    train_rows: np.ndarray
    val_rows: np.ndarray
    features: np.ndarray | None
    info: dict


def targets_for(model: keras.Model, data: SingleBoxData, rows, class_names) -> dict:
    """The model's targets for ``rows``: boxes, and class ids into ``class_names``."""
    targets = {"bounding_box": data.boxes[rows]}
    if "class_label" in model.output_names:
        remap = np.full(len(data.class_names), -1, np.int32)
        for new_id, name in enumerate(class_names):
            remap[data.class_names.index(name)] = new_id
        targets["class_label"] = remap[data.classes[rows]]
    return targets


def train_single_box(
    records: RecordSet,
    *,
    model: str = "bbox_regressor",
    class_names: Sequence[str] | None = None,
    model_options: Mapping | None = None,
    image_size: Sequence[int] = (224, 224),
    epochs: int = 25,
    batch_size: int = 32,
    validation_fraction: float = 0.1,
    augment: bool = False,
    crop: float = 0.5,
    cosine_decay: bool = False,
    start_at_mean_box: bool = False,
    precision: str = "float32",
    seed: int = 42,
    feature_cache_dir: str | os.PathLike | None = None,
    early_stopping_patience: int | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    history_csv: str | os.PathLike | None = None,
    log_to_mlflow: bool = False,
    data: SingleBoxData | None = None,
    strategy: str | tf.distribute.Strategy = "auto",
    verbose="auto",
) -> TrainResult:
    """Train a registered single-box model on the ``"train"`` split of ``records``.

    With a frozen backbone (``trainable_blocks=0``), no augmentation and a
    ``feature_cache_dir``, the backbone runs once per image (or not at all on a cache hit)
    and only the head trains; the returned model still takes images.

    Args:
        records: a record set with one box per image and ``train``/``test`` splits.
        model: a registered single-box model (``"bbox_regressor"``,
            ``"multiclass_detector"``).
        class_names: the classes to train on (``None``: all); the model's class ids
            index this list.
        model_options: further keyword arguments of the model's builder (backbone,
            weights, trainable_blocks, head sizes, loss weights, learning rate...).
        image_size: ``(height, width)`` the images are resized to.
        epochs: training epochs.
        batch_size: examples per step **per replica**; a step of ``strategy`` takes
            ``batch_size x replicas`` examples (the same on one device).
        validation_fraction: share of the training split held out for validation.
        augment: random flips and box-preserving crops (turns the feature cache off).
        crop: the largest share of each box margin a crop may cut.
        cosine_decay: lower the learning rate from its initial value to 0 along a half
            cosine over the epochs (helps the last digits of the IoU when training from
            scratch).
        start_at_mean_box: initialise the box head to predict the training images' mean
            box (see :func:`~kdet.models.single_box.builder.start_at_box`).
        precision: ``"float32"``, ``"mixed_bfloat16"``, ``"mixed_float16"`` or
            ``"auto"`` (see :func:`kdet.training.configure_precision`).
        seed: seed of the weights, the validation split, shuffling and augmentation.
        feature_cache_dir: the feature cache folder; ``None`` to always run the backbone.
        early_stopping_patience: stop after this many epochs without a better
            ``val_loss`` (best weights restored); ``None`` to run all epochs.
        checkpoint_dir: folder of the resumable end-of-epoch backup of the fitted model
            (the head alone when features are cached; see :func:`kdet.training.fit`).
        history_csv: per-epoch metrics as CSV (a DVC plot).
        log_to_mlflow: log per-epoch metrics to the active MLflow run.
        data: the records already loaded at ``image_size`` (skips decoding).
        strategy: ``"auto"``, ``"default"``, ``"mirrored"``, ``"multi_worker"`` or a
            ``tf.distribute.Strategy`` (see :mod:`kdet.distribute`); the model is built
            and compiled in its scope. On a non-chief worker nothing is written (no
            checkpoints, CSV, MLflow; the feature cache goes to a temporary folder).
        verbose: Keras' ``fit`` verbosity (``"auto"`` shows a progress bar).

    Returns:
        A :class:`TrainResult`.
    """
    if not 0.0 <= validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in [0, 1). Received: {validation_fraction=}")
    previous_policy = keras.mixed_precision.global_policy()
    precision = configure_precision(precision)
    try:
        set_seed(seed)
        start = time.perf_counter()
        if data is None:
            data = load_single_box_data(records, image_size=image_size)
        load_seconds = time.perf_counter() - start
        class_names = list(class_names or data.class_names)
        rows = data.select("train", class_names)
        if len(rows) == 0:
            raise ValueError(f"No training images of {class_names} in {records.name!r}.")
        rows = np.random.default_rng(seed).permutation(rows)
        n_val = int(round(len(rows) * validation_fraction))
        val_rows, train_rows = np.sort(rows[:n_val]), np.sort(rows[n_val:])

        builder = get_builder(model)
        options = {"image_size": tuple(image_size), **dict(model_options or {})}
        if "num_classes" in inspect.signature(builder).parameters:
            options["num_classes"] = len(class_names)
        strategy = distribute.get_strategy(strategy)
        chief = distribute.is_chief(strategy)
        # The builder compiles the model itself, inside the strategy's scope.
        net, global_batch = build_for_strategy(
            lambda: builder(**options), strategy=strategy, batch_size=batch_size
        )
        if start_at_mean_box:
            start_at_box(net, data.boxes[train_rows].mean(axis=0), seed=seed)
        frozen = not backbone_layer(net).trainable_weights
        use_cache = frozen and not augment and feature_cache_dir is not None

        features, cache_state, feature_seconds = None, "off", 0.0
        fit_model, inputs = net, data.images
        if use_cache:
            # The extractor is made outside the scope, so its predict runs on one device
            # (reading the replicated weights) with no cross-worker step: every worker
            # reads or computes the features on its own.
            extractor, _ = split_at_backbone(net)
            start = time.perf_counter()
            with contextlib.ExitStack() as stack:
                cache_dir = feature_cache_dir
                if not chief:
                    cache_dir = stack.enter_context(tempfile.TemporaryDirectory())
                features, hit = FeatureCache(cache_dir).get_or_compute(
                    extractor,
                    data.images,
                    records=records,
                    precision=precision,
                    batch_size=global_batch,
                    verbose=verbose,
                )
            feature_seconds = time.perf_counter() - start
            cache_state = "hit" if hit else "miss"
            with strategy.scope():
                # The head shares the model's layers and takes over its compile settings.
                _, head = split_at_backbone(net)
                head.compile_from_config(net.get_compile_config())
            fit_model, inputs = head, features

        def dataset(rows_, training):
            return make_dataset(
                inputs[rows_],
                targets_for(net, data, rows_, class_names),
                batch_size=global_batch,
                shuffle=training,
                augment=training and augment,
                crop=crop,
                seed=seed,
            )

        callbacks = training_callbacks(
            early_stopping_patience=early_stopping_patience if n_val else None,
            monitor="val_loss",
            history_csv=history_csv,
            log_to_mlflow=log_to_mlflow,
            chief=chief,
        )
        if cosine_decay:
            initial = float(keras.ops.convert_to_numpy(fit_model.optimizer.learning_rate))
            # First, so the epoch's ``learning_rate`` is in the logs the CSV and MLflow see.
            callbacks.insert(
                0,
                keras.callbacks.LearningRateScheduler(
                    lambda epoch: initial * 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))
                ),
            )
        start = time.perf_counter()
        history = fit(
            fit_model,
            dataset(train_rows, True),
            checkpoint_dir=checkpoint_dir if chief else None,
            validation_data=dataset(val_rows, False) if n_val else None,
            epochs=epochs,
            callbacks=callbacks,
            verbose=verbose,
        )
        fit_seconds = time.perf_counter() - start
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
    info = {
        "precision": precision,
        "feature_cache": cache_state,
        "load_seconds": load_seconds,
        "feature_seconds": feature_seconds,
        "fit_seconds": fit_seconds,
        "epochs_run": len(history.history.get("loss", [])),
        "replicas": strategy.num_replicas_in_sync,
        "global_batch_size": global_batch,
    }
    return TrainResult(
        net, history.history, data, class_names, train_rows, val_rows, features, info
    )
