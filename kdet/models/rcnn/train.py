"""Training the R-CNN region classifier on labelled proposal crops.

Crops come from :func:`kdet.models.rcnn.labelling.label_proposals` on each training
image, cut with the same ``crop_and_resize`` as the detector uses, and are split into
training and validation **by image**. Augmentation (flips, shifts, zooms, small
rotations, contrast) runs in the input pipeline, on training crops only.

Example:
    >>> model, history = train_rcnn_classifier(  # doctest: +SKIP
    ...     records.split("train"), proposals, backbone="small_cnn", input_size=64, epochs=2
    ... )
"""

from __future__ import annotations

import functools
import os

import keras
import numpy as np
import tensorflow as tf

from kdet import distribute
from kdet.datasets.records import RecordSet
from kdet.models.rcnn.classifier import build_rcnn_classifier
from kdet.models.rcnn.detector import crop_regions
from kdet.models.rcnn.labelling import label_proposals, split_by_image
from kdet.models.rcnn.proposals import read_image
from kdet.training import build_for_strategy, fit, training_callbacks


def build_crop_dataset(
    record_set: RecordSet,
    proposals: dict[str, np.ndarray],
    *,
    crop_size: int,
    positive_iou: float = 0.7,
    negative_iou: float = 0.05,
    max_positives: int = 30,
    max_negatives: int = 10,
) -> tuple[np.ndarray, np.ndarray]:
    """Labelled crops of every image in ``record_set``.

    Returns:
        ``(crops, labels)``: uint8 ``(M, crop_size, crop_size, 3)`` and int32 ``(M,)``
        (0 background, ``c + 1`` class ``c``).
    """
    crops, labels = [], []
    for record in record_set.records:
        if record.image not in proposals:
            raise KeyError(f"No proposals for image {record.image!r}; run the proposals stage")
        regions = label_proposals(
            proposals[record.image],
            record.boxes_array(),
            record.classes_array(),
            positive_iou=positive_iou,
            negative_iou=negative_iou,
            max_positives=max_positives,
            max_negatives=max_negatives,
        )
        if len(regions.boxes) == 0:
            continue
        image = read_image(record_set.image_path(record))
        cut = crop_regions(image, regions.boxes, crop_size)
        crops.append(np.clip(np.round(cut.numpy()), 0, 255).astype(np.uint8))
        labels.append(regions.labels)
    if not crops:
        return np.zeros((0, crop_size, crop_size, 3), np.uint8), np.zeros((0,), np.int32)
    return np.concatenate(crops), np.concatenate(labels)


def crop_augmenter(seed: int | None = None) -> keras.Sequential:
    """Random flips, shifts, zooms, rotations and contrast for training crops."""
    return keras.Sequential(
        [
            keras.layers.RandomFlip("horizontal", seed=seed),
            keras.layers.RandomTranslation(0.1, 0.1, fill_mode="reflect", seed=seed),
            keras.layers.RandomZoom(0.15, fill_mode="reflect", seed=seed),
            keras.layers.RandomRotation(0.05, fill_mode="reflect", seed=seed),
            keras.layers.RandomContrast(0.2, seed=seed),
        ],
        name="crop_augmenter",
    )


def crop_pipeline(
    crops: np.ndarray,
    labels: np.ndarray,
    *,
    batch_size: int,
    augment: bool,
    shuffle: bool,
    seed: int,
) -> tf.data.Dataset:
    """``(crops float32 0..255, labels)`` batches; augmented and shuffled on request."""
    data = tf.data.Dataset.from_tensor_slices((crops, labels))
    if shuffle:
        data = data.shuffle(len(crops), seed=seed, reshuffle_each_iteration=True)
    data = data.batch(batch_size).map(lambda x, y: (tf.cast(x, tf.float32), y))
    if augment:
        augmenter = crop_augmenter(seed)
        data = data.map(
            lambda x, y: (tf.clip_by_value(augmenter(x, training=True), 0.0, 255.0), y),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    return data.prefetch(tf.data.AUTOTUNE)


def train_rcnn_classifier(
    record_set: RecordSet,
    proposals: dict[str, np.ndarray],
    *,
    backbone: str = "mobilenet_v2",
    input_size: int = 224,
    weights=None,
    epochs: int = 10,
    batch_size: int = 32,
    learning_rate: float = 1e-3,
    validation_fraction: float = 0.1,
    augment: bool = True,
    seed: int = 42,
    positive_iou: float = 0.7,
    negative_iou: float = 0.05,
    max_positives: int = 30,
    max_negatives: int = 10,
    early_stopping_patience: int | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    history_csv: str | os.PathLike | None = None,
    log_to_mlflow: bool = False,
    strategy: str | tf.distribute.Strategy = "auto",
) -> tuple[keras.Model, dict]:
    """Label, crop and train the classifier (registered as ``rcnn_classifier``).

    Args:
        record_set: the training images (their ``split`` is not looked at; a share
            ``validation_fraction`` of the *images* is held out for validation).
        proposals: ``{image: (N, 4) xyxy}`` for those images.
        backbone, input_size, weights: see :func:`build_rcnn_classifier`.
        epochs, batch_size, learning_rate: Adam training; ``batch_size`` crops per step
            **per replica** (a step takes ``batch_size x replicas``).
        augment: augment training crops.
        seed: seeds the image split, shuffling and augmentation.
        positive_iou, negative_iou, max_positives, max_negatives: the labelling rule.
        early_stopping_patience, checkpoint_dir, history_csv, log_to_mlflow: see
            :func:`kdet.training.training_callbacks` (they watch ``val_loss``; only the
            chief worker writes).
        strategy: ``"auto"``, ``"default"``, ``"mirrored"``, ``"multi_worker"`` or a
            ``tf.distribute.Strategy`` (see :mod:`kdet.distribute`).

    Returns:
        ``(model, info)``: the trained classifier and ``{"history": per-epoch metrics,
        "crops": {"train": {label: count}, "validation": {...}}}``.
    """
    keras.utils.set_random_seed(seed)
    train_records, val_records = split_by_image(record_set, validation_fraction, seed)
    label_options = {
        "positive_iou": positive_iou,
        "negative_iou": negative_iou,
        "max_positives": max_positives,
        "max_negatives": max_negatives,
    }
    x_train, y_train = build_crop_dataset(
        train_records, proposals, crop_size=input_size, **label_options
    )
    x_val, y_val = build_crop_dataset(val_records, proposals, crop_size=input_size, **label_options)
    if len(x_train) == 0:
        raise ValueError("No training crops: no proposal met the labelling rule")
    strategy = distribute.get_strategy(strategy)
    model, global_batch = build_for_strategy(
        functools.partial(
            build_rcnn_classifier,
            num_classes=len(record_set.class_names),
            backbone=backbone,
            input_size=input_size,
            weights=weights,
        ),
        strategy=strategy,
        batch_size=batch_size,
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    options = {"batch_size": global_batch, "seed": seed}
    train_data = crop_pipeline(x_train, y_train, augment=augment, shuffle=True, **options)
    val_data = None
    if len(x_val):
        val_data = crop_pipeline(x_val, y_val, augment=False, shuffle=False, **options)
    history = fit(
        model,
        train_data,
        validation_data=val_data,
        epochs=epochs,
        verbose=2,
        checkpoint_dir=checkpoint_dir if distribute.is_chief(strategy) else None,
        callbacks=training_callbacks(
            early_stopping_patience=early_stopping_patience,
            monitor="val_loss" if val_data is not None else "loss",
            history_csv=history_csv,
            log_to_mlflow=log_to_mlflow,
            chief=distribute.is_chief(strategy),
        ),
    )
    counts = {
        name: {int(k): int(v) for k, v in zip(*np.unique(y, return_counts=True), strict=True)}
        for name, y in (("train", y_train), ("validation", y_val))
    }
    return model, {"history": history.history, "crops": counts}
