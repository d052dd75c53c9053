"""Training the R-CNN region classifier on labelled proposal crops.

Crops come from one of two labelling rules on each training image
(``labelling="paper"``: :func:`~kdet.models.rcnn.labelling.label_proposals_paper`,
Girshick et al. 2014, with per-class box regression trained on the positives;
``labelling="tutorial"``: :func:`~kdet.models.rcnn.labelling.label_proposals`, the
tutorial's classification-only model), cut with the same ``crop_and_resize`` as the
detector uses, and are split into training and validation **by image**. Augmentation
runs in the input pipeline, on training crops only: flips, shifts, zooms, small
rotations and contrast for the tutorial's model; mirroring (which mirrors the box
targets too) and contrast with box regression, since shifts and zooms would move the
crop away from its targets.

Example:
    >>> model, history = train_rcnn_classifier(  # doctest: +SKIP
    ...     records.split("train"), proposals, backbone="small_cnn", input_size=64, epochs=2
    ... )
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping

import keras
import numpy as np
import tensorflow as tf

from kdet import distribute
from kdet.datasets.records import RecordSet
from kdet.models.rcnn.box_coder import encode_box_deltas, per_class_box_loss
from kdet.models.rcnn.classifier import build_rcnn_classifier
from kdet.models.rcnn.detector import crop_regions
from kdet.models.rcnn.labelling import label_proposals, label_proposals_paper, split_by_image
from kdet.models.rcnn.proposals import read_image
from kdet.training import build_for_strategy, fit, training_callbacks

LABELLING = ("paper", "tutorial")


def build_crop_dataset(
    record_set: RecordSet,
    proposals: dict[str, np.ndarray],
    *,
    crop_size: int,
    labelling: str = "paper",
    rule: Mapping | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labelled crops of every image in ``record_set``, with box-regression targets.

    Args:
        record_set: the images and their boxes.
        proposals: ``{image: (N, 4) xyxy}``.
        crop_size: side of the crops.
        labelling: ``"paper"`` or ``"tutorial"`` (see the module docstring).
        rule: keyword arguments of that rule's function (its defaults when ``None``).
        seed: seeds the paper rule's random draws.

    Returns:
        ``(crops, labels, box_targets)``: uint8 ``(M, crop_size, crop_size, 3)``, int32
        ``(M,)`` (0 background, ``c + 1`` class ``c``) and float32 ``(M, 5)``: the
        :func:`~kdet.models.rcnn.box_coder.encode_box_deltas` of each crop's box to its
        ground truth (zeros for background) and its label.

    Example:
        >>> crops, labels, targets = build_crop_dataset(  # doctest: +SKIP
        ...     records, proposals, crop_size=48, labelling="paper", rule={"max_positives": 8}
        ... )
    """
    if labelling not in LABELLING:
        raise ValueError(f"labelling must be one of {LABELLING}. Received: {labelling=}")
    rng = np.random.default_rng(seed)
    rule = dict(rule or {})
    crops, labels, targets = [], [], []
    for record in record_set.records:
        if record.image not in proposals:
            raise KeyError(f"No proposals for image {record.image!r}; run the proposals stage")
        args = (proposals[record.image], record.boxes_array(), record.classes_array())
        if labelling == "paper":
            regions = label_proposals_paper(*args, rng=rng, **rule)
        else:
            regions = label_proposals(*args, **rule)
        if len(regions.boxes) == 0:
            continue
        image = read_image(record_set.image_path(record))
        cut = crop_regions(image, regions.boxes, crop_size)
        crops.append(np.clip(np.round(cut.numpy()), 0, 255).astype(np.uint8))
        labels.append(regions.labels)
        positive = (regions.labels > 0)[:, None]
        deltas = encode_box_deltas(regions.boxes, regions.matched) * positive
        targets.append(np.concatenate([deltas, regions.labels[:, None]], axis=1))
    if not crops:
        empty = np.zeros((0, crop_size, crop_size, 3), np.uint8)
        return empty, np.zeros((0,), np.int32), np.zeros((0, 5), np.float32)
    return np.concatenate(crops), np.concatenate(labels), np.concatenate(targets).astype(np.float32)


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


def _mirror_with_targets(crops, targets, seed):
    """Mirror a random half of the crops left-right, negating their ``t_x`` targets."""
    flip = tf.random.uniform(tf.shape(crops)[:1], seed=seed) < 0.5
    crops = tf.where(flip[:, None, None, None], tf.reverse(crops, axis=[2]), crops)
    sign = tf.where(flip[:, None], tf.constant([[-1.0, 1, 1, 1, 1]]), 1.0)
    return crops, targets * sign


def crop_pipeline(
    crops: np.ndarray,
    labels: np.ndarray,
    *,
    batch_size: int,
    augment: bool,
    shuffle: bool,
    seed: int,
    box_targets: np.ndarray | None = None,
) -> tf.data.Dataset:
    """``(crops float32 0..255, labels)`` batches; augmented and shuffled on request.

    With ``box_targets`` (``(M, 5)``, see :func:`build_crop_dataset`) the batches are
    ``(crops, {"class_label": labels, "box_delta": box_targets})`` and augmentation only
    mirrors (with the targets) and changes contrast.
    """
    if box_targets is None:
        data = tf.data.Dataset.from_tensor_slices((crops, labels))
    else:
        data = tf.data.Dataset.from_tensor_slices(
            (crops, {"class_label": labels, "box_delta": box_targets})
        )
    if shuffle:
        data = data.shuffle(len(crops), seed=seed, reshuffle_each_iteration=True)
    data = data.batch(batch_size).map(lambda x, y: (tf.cast(x, tf.float32), y))
    if augment and box_targets is None:
        augmenter = crop_augmenter(seed)
        data = data.map(
            lambda x, y: (tf.clip_by_value(augmenter(x, training=True), 0.0, 255.0), y),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    elif augment:
        contrast = keras.layers.RandomContrast(0.2, seed=seed)

        def augment_batch(x, y):
            x, targets = _mirror_with_targets(x, y["box_delta"], seed)
            x = tf.clip_by_value(contrast(x, training=True), 0.0, 255.0)
            return x, {**y, "box_delta": targets}

        data = data.map(augment_batch, num_parallel_calls=tf.data.AUTOTUNE)
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
    labelling: str = "paper",
    paper: Mapping | None = None,
    tutorial: Mapping | None = None,
    box_loss_weight: float = 1.0,
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
        seed: seeds the image split, the paper rule's draws, shuffling and augmentation.
        labelling: ``"paper"`` (Girshick et al. 2014, with per-class box regression) or
            ``"tutorial"`` (the tutorial's rule, classification only).
        paper, tutorial: keyword arguments of each rule's function
            (:func:`~kdet.models.rcnn.labelling.label_proposals_paper`,
            :func:`~kdet.models.rcnn.labelling.label_proposals`); only the chosen one is
            used; ``None`` keeps that function's defaults.
        box_loss_weight: weight of the smooth-L1 box loss (``labelling="paper"``).
        early_stopping_patience, checkpoint_dir, history_csv, log_to_mlflow: see
            :func:`kdet.training.training_callbacks` (they watch ``val_loss``; only the
            chief worker writes).
        strategy: ``"auto"``, ``"default"``, ``"mirrored"``, ``"multi_worker"`` or a
            ``tf.distribute.Strategy`` (see :mod:`kdet.distribute`).

    Returns:
        ``(model, info)``: the trained classifier and ``{"history": per-epoch metrics,
        "crops": {"train": {label: count}, "validation": {...}}, "validation_images":
        [image names held out]}``.
    """
    keras.utils.set_random_seed(seed)
    train_records, val_records = split_by_image(record_set, validation_fraction, seed)
    regress = labelling == "paper"
    label_options = {
        "crop_size": input_size,
        "labelling": labelling,
        "rule": paper if regress else tutorial,
        "seed": seed,
    }
    x_train, y_train, t_train = build_crop_dataset(train_records, proposals, **label_options)
    x_val, y_val, t_val = build_crop_dataset(val_records, proposals, **label_options)
    if len(x_train) == 0:
        raise ValueError("No training crops: no proposal met the labelling rule")
    if regress:
        loss = {"class_label": "sparse_categorical_crossentropy", "box_delta": per_class_box_loss}
        compile_options = {
            "loss": loss,
            "loss_weights": {"class_label": 1.0, "box_delta": box_loss_weight},
            "metrics": {"class_label": ["accuracy"]},
        }
    else:
        compile_options = {"loss": "sparse_categorical_crossentropy", "metrics": ["accuracy"]}
    strategy = distribute.get_strategy(strategy)
    model, global_batch = build_for_strategy(
        functools.partial(
            build_rcnn_classifier,
            num_classes=len(record_set.class_names),
            backbone=backbone,
            input_size=input_size,
            weights=weights,
            box_regression=regress,
        ),
        strategy=strategy,
        batch_size=batch_size,
        optimizer=keras.optimizers.Adam(learning_rate),
        **compile_options,
    )
    options = {"batch_size": global_batch, "seed": seed}
    train_data = crop_pipeline(
        x_train,
        y_train,
        augment=augment,
        shuffle=True,
        box_targets=t_train if regress else None,
        **options,
    )
    val_data = None
    if len(x_val):
        val_data = crop_pipeline(
            x_val,
            y_val,
            augment=False,
            shuffle=False,
            box_targets=t_val if regress else None,
            **options,
        )
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
    return model, {
        "history": history.history,
        "crops": counts,
        "validation_images": [record.image for record in val_records.records],
    }
