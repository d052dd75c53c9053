"""tf.data inputs for RetinaNet on top of ``kdet.data.build_pipeline``.

Images keep their aspect ratio (scaled to fit, centred, zero padded) for training,
evaluation and the exported SavedModel alike; training batches get kdet's default
augmentation (Keras 3 core layers). Batches are handed to KerasHub as
``(images, {"boxes", "labels"})`` pairs, the Keras 3 core convention.

Example:
    >>> train = training_dataset(records.split("train"), image_size=(128, 128),
    ...                          batch_size=8)  # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from kdet.data import build_pipeline, from_records, resize_geometry, resize_with_boxes
from kdet.datasets.records import RecordSet


def as_keras_hub(batches: tf.data.Dataset) -> tf.data.Dataset:
    """kdet batch dicts -> ``(images, {"boxes", "labels"})`` pairs (same tensors)."""
    return batches.map(
        lambda batch: (
            batch["images"],
            {
                "boxes": batch["bounding_boxes"]["boxes"],
                "labels": batch["bounding_boxes"]["classes"],
            },
        )
    )


def _examples(record_set: RecordSet) -> tf.data.Dataset:
    if not len(record_set):
        raise ValueError(f"{record_set.root}: no records to build a dataset from")
    return from_records(record_set)


def training_dataset(
    record_set: RecordSet,
    *,
    image_size,
    batch_size: int,
    augment: bool = True,
    max_boxes: int = 32,
    seed: int | None = 0,
) -> tf.data.Dataset:
    """Shuffled (augmented) pairs for ``fit``; incomplete batches dropped."""
    return as_keras_hub(
        build_pipeline(
            _examples(record_set),
            image_size=image_size,
            batch_size=batch_size,
            keep_aspect_ratio=True,
            augment=augment,
            shuffle=True,
            seed=seed,
            max_boxes=max_boxes,
            drop_remainder=True,
        )
    )


def evaluation_dataset(
    record_set: RecordSet, *, image_size, batch_size: int, max_boxes: int = 32
) -> tf.data.Dataset:
    """kdet batch dicts of ``record_set`` in record order, without augmentation."""
    return build_pipeline(
        _examples(record_set),
        image_size=image_size,
        batch_size=batch_size,
        keep_aspect_ratio=True,
        max_boxes=max_boxes,
    )


def fit_to_model(image: tf.Tensor, image_size) -> tf.Tensor:
    """One image ``(H, W, 3)`` -> float32 ``image_size`` input, as the batches are made."""
    image, _ = resize_with_boxes(
        tf.cast(image, tf.float32), tf.zeros((0, 4)), image_size, keep_aspect_ratio=True
    )
    return image


def boxes_to_original(boxes: tf.Tensor, height, width, image_size) -> tf.Tensor:
    """``xyxy`` boxes of a model input -> the ``height x width`` original, clipped."""
    _, _, scale_y, scale_x, offset_y, offset_x = resize_geometry(
        height, width, image_size, keep_aspect_ratio=True
    )
    boxes = (tf.cast(boxes, tf.float32) - tf.stack([offset_x, offset_y, offset_x, offset_y])) / (
        tf.stack([scale_x, scale_y, scale_x, scale_y])
    )
    width = tf.cast(width, tf.float32)
    height = tf.cast(height, tf.float32)
    return tf.clip_by_value(boxes, 0.0, tf.stack([width, height, width, height]))


def original_sizes(record_set: RecordSet) -> np.ndarray:
    """``(N, 2)`` heights and widths of the records' images."""
    return np.array([[r.height, r.width] for r in record_set.records], np.int32)
