"""tf.data inputs for YOLOv8 on top of ``kdet.data.build_pipeline``.

Images keep their aspect ratio (scaled to fit, centred, zero padded: ``keep_aspect_ratio``)
for training, evaluation and the exported SavedModel alike, so a predicted box maps back to
the original image with ``kdet.data.resize_geometry``. Training batches then go through
the box-aware layers chosen by the recipe: ``RandomFlip`` and ``RandomShear`` from Keras 3
core, ``JitteredResize`` and optionally ``Mosaic`` from KerasCV (Keras core has neither).

Example:
    >>> train = training_dataset(record_set.split("train"), image_size=(128, 128),
    ...                          batch_size=8)                       # doctest: +SKIP
    >>> batch = next(iter(train))                                    # doctest: +SKIP
    >>> batch["images"].shape, batch["bounding_boxes"]["boxes"].shape  # doctest: +SKIP
    (TensorShape([8, 128, 128, 3]), TensorShape([8, 32, 4]))
"""

from __future__ import annotations

import keras
import keras_cv
import numpy as np
import tensorflow as tf

from kdet.data import build_pipeline, from_records, resize_geometry, resize_with_boxes
from kdet.datasets.records import RecordSet


def augmenters(
    image_size: tuple[int, int],
    *,
    flip: bool = True,
    scale_range=(0.5, 1.5),
    shear: float = 0.0,
    mosaic: bool = False,
    seed: int | None = None,
) -> list:
    """Box-aware augmentation layers for ``xyxy`` batches, applied in order.

    Flip and shear are Keras 3 core layers (seeded as usual); ``JitteredResize`` and
    ``Mosaic`` have no core counterpart and stay KerasCV's, each wrapped in a
    :class:`KerasCVAugmenter` for ``kdet.data.augment_batch`` (the wrapped layer is its
    ``.layer``). Flip, shear, jitter and mosaic are seeded with ``seed`` + 0, 1, 2, 3.

    Example:
        >>> [type(a).__name__ for a in augmenters((64, 64), seed=0)]  # doctest: +SKIP
        ['RandomFlip', 'KerasCVAugmenter']
    """

    def layer_seed(offset):
        return None if seed is None else seed + offset

    core = {"dtype": "float32", "bounding_box_format": "xyxy"}
    layers = []
    if flip:
        layers.append(keras.layers.RandomFlip(mode="horizontal", seed=layer_seed(0), **core))
    if shear:
        layers.append(
            keras.layers.RandomShear(x_factor=shear, y_factor=shear, seed=layer_seed(1), **core)
        )
    jitter = keras_cv.layers.JitteredResize(
        dtype="float32",
        target_size=tuple(image_size),
        scale_factor=tuple(scale_range),
        bounding_box_format="xyxy",
    )
    cv_layers = [(jitter, 2)]
    if mosaic:
        cv_layers.append((keras_cv.layers.Mosaic(dtype="float32", bounding_box_format="xyxy"), 3))
    if seed is not None:
        # keras-cv 0.9 layers ignore a falsy seed and JitteredResize drops it, so each
        # keras-cv layer gets its own seeded generator (core layers need no such help).
        for layer, offset in cv_layers:
            layer._random_generator = tf.random.Generator.from_seed(seed + offset)
    return layers + [KerasCVAugmenter(layer) for layer, _ in cv_layers]


class KerasCVAugmenter:
    """A KerasCV layer (``JitteredResize``, ``Mosaic``) as a ``kdet.data.augment_batch``
    augmenter; Keras 3 core layers need no adapter.

    ``augment_batch`` hands augmenters Keras 3 core batches (dense boxes, ``"labels"``);
    KerasCV layers want ``"classes"`` and may return ragged boxes. This adapter renames the
    key both ways and makes the boxes dense and ``-1`` padded again.
    """

    def __init__(self, layer):
        self.layer = layer

    def __call__(self, data):
        boxes = data["bounding_boxes"]
        out = self.layer(
            {
                "images": data["images"],
                "bounding_boxes": {"boxes": boxes["boxes"], "classes": boxes["labels"]},
            }
        )
        dense = keras_cv.bounding_box.to_dense(out["bounding_boxes"])
        return {
            "images": out["images"],
            "bounding_boxes": {"boxes": dense["boxes"], "labels": dense["classes"]},
        }


def training_dataset(
    record_set: RecordSet,
    *,
    image_size: tuple[int, int],
    batch_size: int,
    flip: bool = True,
    scale_range=(0.5, 1.5),
    shear: float = 0.0,
    mosaic: bool = False,
    shuffle_buffer_batches: int | None = None,
    max_boxes: int = 32,
    seed: int | None = 0,
    bounding_box_format: str = "xyxy",
) -> tf.data.Dataset:
    """Shuffled, augmented KerasCV batches (images float32 in ``[0, 255]``, boxes in
    ``bounding_box_format`` padded with -1 to ``max_boxes``); incomplete batches dropped.

    ``shuffle_buffer_batches``: shuffle through a buffer of this many batches (the keras.io
    example's ``shuffle(BATCH_SIZE * 4)``); ``None`` shuffles the whole set each epoch."""
    layers = augmenters(
        image_size, flip=flip, scale_range=scale_range, shear=shear, mosaic=mosaic, seed=seed
    )
    return build_pipeline(
        _examples(record_set),
        image_size=image_size,
        batch_size=batch_size,
        keep_aspect_ratio=True,
        augment=layers,
        shuffle=True if shuffle_buffer_batches is None else shuffle_buffer_batches * batch_size,
        seed=seed,
        max_boxes=max_boxes,
        bounding_box_format=bounding_box_format,
        drop_remainder=True,
    )


def evaluation_dataset(
    record_set: RecordSet,
    *,
    image_size: tuple[int, int],
    batch_size: int,
    max_boxes: int = 32,
    bounding_box_format: str = "xyxy",
) -> tf.data.Dataset:
    """KerasCV batches of ``record_set`` in record order, without augmentation."""
    return build_pipeline(
        _examples(record_set),
        image_size=image_size,
        batch_size=batch_size,
        keep_aspect_ratio=True,
        max_boxes=max_boxes,
        bounding_box_format=bounding_box_format,
    )


def fit_to_model(image: tf.Tensor, image_size: tuple[int, int]) -> tf.Tensor:
    """One image ``(H, W, 3)`` of any size and dtype -> float32 ``image_size`` input, scaled
    to fit and centred exactly as the training and evaluation batches are."""
    image, _ = resize_with_boxes(
        tf.cast(image, tf.float32), tf.zeros((0, 4)), image_size, keep_aspect_ratio=True
    )
    return image


def boxes_to_original(boxes: tf.Tensor, height, width, image_size) -> tf.Tensor:
    """Map ``xyxy`` boxes of a model input back to the ``height x width`` original image
    (the inverse of :func:`fit_to_model`), clipped to the image."""
    _, _, scale_y, scale_x, offset_y, offset_x = resize_geometry(
        height, width, image_size, keep_aspect_ratio=True
    )
    boxes = (boxes - tf.stack([offset_x, offset_y, offset_x, offset_y])) / tf.stack(
        [scale_x, scale_y, scale_x, scale_y]
    )
    width = tf.cast(width, tf.float32)
    height = tf.cast(height, tf.float32)
    return tf.clip_by_value(boxes, 0.0, tf.stack([width, height, width, height]))


def _examples(record_set: RecordSet) -> tf.data.Dataset:
    if not len(record_set):
        raise ValueError(f"{record_set.root}: no records to build a dataset from")
    return from_records(record_set)


def original_sizes(record_set: RecordSet) -> np.ndarray:
    """``(N, 2)`` heights and widths of the records' images."""
    return np.array([[r.height, r.width] for r in record_set.records], np.int32)
