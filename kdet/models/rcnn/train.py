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

Hard-negative mining (``hard_negative_mining.rounds`` > 0) then trains further rounds: the
trained classifier scores every proposal of the training images that overlaps no object
(IoU below ``max_iou``), the ones it takes for an object (score >= ``score_threshold``, at
most ``max_per_image`` per image) join the crops as background, and training goes on for
``epochs`` more epochs (:func:`mine_hard_negatives`). A finished round is saved in the
checkpoint folder, so a killed training resumes in the round it was in.

Example:
    >>> model, history = train_rcnn_classifier(  # doctest: +SKIP
    ...     records.split("train"), proposals, backbone="small_cnn", input_size=64, epochs=2
    ... )
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Mapping
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from kdet import atomic, distribute
from kdet.datasets.records import RecordSet
from kdet.models.rcnn.box_coder import encode_box_deltas, per_class_box_loss
from kdet.models.rcnn.classifier import build_rcnn_classifier
from kdet.models.rcnn.detector import class_probabilities, crop_regions, region_outputs
from kdet.models.rcnn.labelling import (
    iou_matrix,
    label_proposals,
    label_proposals_paper,
    split_by_image,
)
from kdet.models.rcnn.proposals import read_image
from kdet.training import build_for_strategy, fit, training_callbacks

LABELLING = ("paper", "tutorial")
#: ``hard_negative_mining`` options (see :func:`mine_hard_negatives`); ``rounds: 0`` is off
MINING_DEFAULTS = {
    "rounds": 0,
    "epochs": 5,
    "max_iou": 0.3,
    "score_threshold": 0.5,
    "max_per_image": 8,
}
# a finished round's files in checkpoint_dir/rounds/round_R/, kept until training ends
ROUND_MODEL, ROUND_HISTORY = "model.keras", "history.json"


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
        crops.append(_uint8_crops(image, regions.boxes, crop_size))
        labels.append(regions.labels)
        positive = (regions.labels > 0)[:, None]
        deltas = encode_box_deltas(regions.boxes, regions.matched) * positive
        targets.append(np.concatenate([deltas, regions.labels[:, None]], axis=1))
    if not crops:
        empty = np.zeros((0, crop_size, crop_size, 3), np.uint8)
        return empty, *_background(0)
    return np.concatenate(crops), np.concatenate(labels), np.concatenate(targets).astype(np.float32)


def mine_hard_negatives(
    classifier: keras.Model,
    record_set: RecordSet,
    proposals: dict[str, np.ndarray],
    *,
    crop_size: int,
    max_iou: float = 0.3,
    score_threshold: float = 0.5,
    max_per_image: int = 8,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The classifier's false positives among the proposals, as background crops.

    For every image: the proposals whose IoU with every ground-truth box is below
    ``max_iou`` and whose best object-class probability is at least ``score_threshold``,
    the ``max_per_image`` highest-scoring of them.

    Returns:
        ``(crops, labels, box_targets)`` as :func:`build_crop_dataset`'s, every label 0.

    Example:
        >>> crops, labels, _ = mine_hard_negatives(  # doctest: +SKIP
        ...     model, records, proposals, crop_size=48, score_threshold=0.5
        ... )
    """
    crops = []
    for record in record_set.records:
        boxes = np.asarray(proposals[record.image], np.float32).reshape(-1, 4)
        overlap = iou_matrix(boxes, record.boxes_array())
        boxes = boxes[overlap.max(axis=1, initial=0.0) < max_iou]
        if len(boxes) == 0:
            continue
        image = read_image(record_set.image_path(record))
        outputs = region_outputs(classifier, image, boxes, crop_size=crop_size, batch_size=512)
        scores = class_probabilities(outputs).numpy()[:, 1:].max(axis=1)
        best = np.argsort(-scores, kind="stable")[:max_per_image]
        best = best[scores[best] >= score_threshold]
        if len(best):
            crops.append(_uint8_crops(image, boxes[best], crop_size))
    if not crops:
        return np.zeros((0, crop_size, crop_size, 3), np.uint8), *_background(0)
    crops = np.concatenate(crops)
    return crops, *_background(len(crops))


def _uint8_crops(image, boxes, crop_size: int) -> np.ndarray:
    """:func:`~kdet.models.rcnn.detector.crop_regions`, rounded to uint8 for storage."""
    return np.clip(np.round(crop_regions(image, boxes, crop_size).numpy()), 0, 255).astype(np.uint8)


def _background(count: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels and box targets of ``count`` background crops."""
    return np.zeros((count,), np.int32), np.zeros((count, 5), np.float32)


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
    # The augmenting maps run sequentially: their random ops keep state, so a parallel map
    # would hand out the draws in a nondeterministic order and a seed would not repeat a run.
    if augment and box_targets is None:
        augmenter = crop_augmenter(seed)
        data = data.map(lambda x, y: (tf.clip_by_value(augmenter(x, training=True), 0.0, 255.0), y))
    elif augment:
        contrast = keras.layers.RandomContrast(0.2, seed=seed)

        def augment_batch(x, y):
            x, targets = _mirror_with_targets(x, y["box_delta"], seed)
            x = tf.clip_by_value(contrast(x, training=True), 0.0, 255.0)
            return x, {**y, "box_delta": targets}

        data = data.map(augment_batch)
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
    hard_negative_mining: Mapping | None = None,
    initial_model: str | os.PathLike | None = None,
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
        hard_negative_mining: :data:`MINING_DEFAULTS` keys: ``rounds`` of mining after
            the first training, each adding the classifier's false positives on the
            training images (:func:`mine_hard_negatives` with ``max_iou``,
            ``score_threshold``, ``max_per_image``) as background and training ``epochs``
            more epochs; ``None`` or ``rounds: 0``: no mining.
        initial_model: a trained classifier (``.keras``, same ``input_size`` and
            ``labelling``) that stands for the first round, which is then not trained:
            mining rounds start from it.
        early_stopping_patience, checkpoint_dir, history_csv, log_to_mlflow: see
            :func:`kdet.training.training_callbacks` (they watch ``val_loss``; only the
            chief worker writes).
        strategy: ``"auto"``, ``"default"``, ``"mirrored"``, ``"multi_worker"`` or a
            ``tf.distribute.Strategy`` (see :mod:`kdet.distribute`).

    Returns:
        ``(model, info)``: the trained classifier and ``{"history": per-epoch metrics of
        every round, "crops": {"train": {label: count}, "validation": {...}},
        "mined_negatives": [crops mined in each mining round], "validation_images": [image
        names held out]}``.
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
    if initial_model is not None:
        model = _initial_model(
            initial_model, strategy, input_size, regress, len(record_set.class_names)
        )
    options = {"batch_size": global_batch, "seed": seed, "box_regression": regress}
    val_data = None
    if len(x_val):
        val_data = _pipeline(x_val, y_val, t_val, augment=False, shuffle=False, **options)
    chief = distribute.is_chief(strategy)
    checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None and chief else None
    mining = {**MINING_DEFAULTS, **(hard_negative_mining or {})}
    history, mined = {}, []
    for round_index in range(mining["rounds"] + 1):
        if round_index:
            x_mined, y_mined, t_mined = _mined_crops(
                model, train_records, proposals, checkpoint_dir, round_index, input_size, mining
            )
            mined.append(len(x_mined))
            x_train = np.concatenate([x_train, x_mined])
            y_train = np.concatenate([y_train, y_mined])
            t_train = np.concatenate([t_train, t_mined])
        if round_index == 0 and initial_model is not None:
            continue
        finished = _finished_round(checkpoint_dir, round_index)
        if finished is not None and finished.exists():  # done before an interruption
            with strategy.scope():
                model = keras.saving.load_model(finished / ROUND_MODEL)
            history = json.loads((finished / ROUND_HISTORY).read_text())
            _write_history_csv(history_csv, history)
            continue
        first_epoch = 0 if round_index == 0 else epochs + (round_index - 1) * mining["epochs"]
        callbacks = training_callbacks(
            early_stopping_patience=early_stopping_patience,
            monitor="val_loss" if val_data is not None else "loss",
            history_csv=history_csv,
            log_to_mlflow=log_to_mlflow,
            chief=chief,
        )
        for callback in callbacks:  # later rounds add their epochs to the same history
            if isinstance(callback, keras.callbacks.CSVLogger):
                callback.append = round_index > 0
        fitted = fit(
            model,
            _pipeline(x_train, y_train, t_train, augment=augment, shuffle=True, **options),
            validation_data=val_data,
            initial_epoch=first_epoch,
            epochs=epochs if round_index == 0 else first_epoch + mining["epochs"],
            verbose=2,
            checkpoint_dir=_fit_folder(checkpoint_dir, round_index),
            callbacks=callbacks,
        )
        for key, values in fitted.history.items():
            history.setdefault(key, []).extend(values)
        if finished is not None and round_index < mining["rounds"]:
            _save_round(finished, model, history)
    counts = {
        name: {int(k): int(v) for k, v in zip(*np.unique(y, return_counts=True), strict=True)}
        for name, y in (("train", y_train), ("validation", y_val))
    }
    return model, {
        "history": history,
        "crops": counts,
        "mined_negatives": mined,
        "validation_images": [record.image for record in val_records.records],
    }


def _initial_model(
    path, strategy, input_size: int, box_regression: bool, num_classes: int
) -> keras.Model:
    """The classifier saved at ``path``, refused when its input or outputs differ."""
    with strategy.scope():
        model = keras.saving.load_model(path)
    outputs = model.output if isinstance(model.output, dict) else {"class_label": model.output}
    found = (
        tuple(model.input_shape[1:3]),
        "box_delta" in outputs,
        class_probabilities(outputs).shape[-1] - 1,
    )
    wanted = ((input_size, input_size), box_regression, num_classes)
    if found != wanted:
        describe = "{0[0]}x{0[1]} crops, box regression {1}, {2} classes".format
        raise ValueError(
            f"{path}: the classifier to start from takes {describe(*found)}; this training "
            f"needs {describe(*wanted)} (input_size, labelling, dataset)"
        )
    return model


def _pipeline(crops, labels, targets, *, box_regression, **options):
    """:func:`crop_pipeline` of crops with their box targets when the model regresses."""
    targets = targets if box_regression else None
    return crop_pipeline(crops, labels, box_targets=targets, **options)


def _fit_folder(checkpoint_dir: Path | None, round_index: int) -> Path | None:
    """Where :func:`kdet.training.fit` backs up a round: the first round in
    ``checkpoint_dir`` itself, mining round ``r`` in ``checkpoint_dir/mining_r``."""
    if checkpoint_dir is None or round_index == 0:
        return checkpoint_dir
    return checkpoint_dir / f"mining_{round_index}"


def _finished_round(checkpoint_dir: Path | None, round_index: int) -> Path | None:
    """The folder a finished round is kept in until training ends (model and history)."""
    return None if checkpoint_dir is None else checkpoint_dir / "rounds" / f"round_{round_index}"


def _save_round(folder: Path, model: keras.Model, history: dict) -> None:
    def write(staging):
        model.save(Path(staging) / ROUND_MODEL)
        (Path(staging) / ROUND_HISTORY).write_text(json.dumps(history))

    atomic.replace_folder(folder, write)


def _mined_crops(model, records, proposals, checkpoint_dir, round_index, crop_size, mining):
    """Round ``round_index``'s mined background crops, kept in ``checkpoint_dir`` so a
    resumed training trains on the same ones."""
    path = (
        None if checkpoint_dir is None else checkpoint_dir / "rounds" / f"mined_{round_index}.npz"
    )
    if path is not None and path.exists():
        with np.load(path) as saved:
            return saved["crops"], saved["labels"], saved["targets"]
    options = {key: mining[key] for key in ("max_iou", "score_threshold", "max_per_image")}
    crops, labels, targets = mine_hard_negatives(
        model, records, proposals, crop_size=crop_size, **options
    )
    if path is not None:
        atomic.write_file(
            path, lambda file: np.savez(file, crops=crops, labels=labels, targets=targets)
        )
    return crops, labels, targets


def _write_history_csv(path, history: dict) -> None:
    """Write ``history`` (metric -> values per epoch) as Keras's ``CSVLogger`` does."""
    if path is None or not history:
        return
    keys = sorted(history)
    rows = [",".join(["epoch", *keys])]
    for epoch, values in enumerate(zip(*(history[key] for key in keys), strict=True)):
        rows.append(",".join([str(epoch), *map(str, values)]))
    atomic.write_text(path, "\n".join(rows) + "\n")
