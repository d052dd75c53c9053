"""tf.data pipelines that yield KerasCV detection batches.

Order of the steps: (shuffle file names when not caching) -> decode + resize, in
parallel -> cache (``uint8``, so a cached image takes ``H*W*3`` bytes) -> shuffle ->
batch with ``-1`` padding -> augment -> normalise -> box format -> prefetch.

Example:
    >>> from kdet.data import build_pipeline, from_records
    >>> dataset = build_pipeline(from_records(records, "train"), image_size=(224, 224),
    ...                          batch_size=8, augment=True, shuffle=True, seed=0)
    ... # doctest: +SKIP
    >>> batch = next(iter(dataset))  # doctest: +SKIP
    >>> batch["images"].shape, batch["bounding_boxes"]["boxes"].shape  # doctest: +SKIP
    (TensorShape([8, 224, 224, 3]), TensorShape([8, 3, 4]))
"""

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import tensorflow as tf

from kdet import bounding_box
from kdet.bounding_box.formats import validate_format
from kdet.data.augment import augment_batch, default_augmenters
from kdet.data.decode import decode_image, read_image
from kdet.data.normalize import NORMALIZATIONS, normalize
from kdet.data.resize import resize_with_boxes

# The output box formats (kdet's, named as in KerasCV).
BOUNDING_BOX_FORMATS = bounding_box.FORMATS
# Shuffle buffer when the number of examples is unknown.
_DEFAULT_SHUFFLE_BUFFER = 1024


def _decode_and_resize(image_size, keep_aspect_ratio, max_boxes):
    def fn(example):
        if "image" not in example:
            image = read_image(example["filename"])
        elif example["image"].dtype == tf.string:
            image = decode_image(example["image"], example["filename"])
        else:
            image = example["image"]
        boxes = tf.reshape(tf.cast(example["boxes"], tf.float32), (-1, 4))
        classes = tf.reshape(tf.cast(example["classes"], tf.float32), (-1,))
        if max_boxes is not None:
            boxes, classes = boxes[:max_boxes], classes[:max_boxes]
        image, boxes = resize_with_boxes(image, boxes, image_size, keep_aspect_ratio)
        # Kept as uint8 until after the cache: 4x less memory than float32.
        image = tf.saturate_cast(tf.round(image), tf.uint8)
        return {"images": image, "boxes": boxes, "classes": classes}

    return fn


def _batch_dict(element):
    return {
        "images": tf.cast(element["images"], tf.float32),
        "bounding_boxes": {"boxes": element["boxes"], "classes": element["classes"]},
    }


def _finish(normalization, bounding_box_format):
    def fn(batch):
        boxes = batch["bounding_boxes"]["boxes"]
        classes = batch["bounding_boxes"]["classes"]
        if bounding_box_format != "xyxy":
            # Keeps the -1 padding rows as they are.
            boxes = bounding_box.convert_format(
                boxes, source="xyxy", target=bounding_box_format, images=batch["images"]
            )
        return {
            "images": normalize(batch["images"], normalization),
            "bounding_boxes": {"boxes": boxes, "classes": classes},
        }

    return fn


def _check_arguments(image_size, batch_size, normalization, max_boxes):
    if len(image_size) != 2 or min(int(v) for v in image_size) < 1:
        raise ValueError(
            f"image_size must be (height, width) of positive ints. Received: "
            f"image_size={image_size!r}"
        )
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1. Received: batch_size={batch_size!r}")
    if normalization not in NORMALIZATIONS:
        raise ValueError(
            f"normalization must be one of {sorted(NORMALIZATIONS)}. "
            f"Received: normalization={normalization!r}"
        )
    if max_boxes is not None and int(max_boxes) < 1:
        raise ValueError(f"max_boxes must be None or >= 1. Received: max_boxes={max_boxes!r}")


def build_pipeline(
    examples: tf.data.Dataset,
    *,
    image_size=(224, 224),
    batch_size: int = 32,
    keep_aspect_ratio: bool = False,
    normalization: str = "none",
    augment: bool | Sequence[Callable] | None = None,
    shuffle: bool | int = False,
    seed: int | None = None,
    cache: bool | str | os.PathLike = True,
    max_boxes: int | None = None,
    bounding_box_format: str = "xyxy",
    drop_remainder: bool = False,
) -> tf.data.Dataset:
    """Turn raw examples into batches of KerasCV's detection dict.

    Args:
        examples: raw examples, from :func:`~kdet.data.from_records` or
            :func:`~kdet.data.from_tfds` (``filename``, optional ``image``, ``boxes``
            absolute ``xyxy``, ``classes``).
        image_size: ``(height, width)`` of the batches' images.
        batch_size: images per batch.
        keep_aspect_ratio: scale uniformly and pad (centred) instead of stretching.
        normalization: ``"none"`` (``0..255``), ``"unit"`` (``0..1``), ``"vgg16"`` or
            ``"mobilenet_v2"`` (see :func:`~kdet.data.normalize`).
        augment: ``True`` for :func:`~kdet.data.default_augmenters` (horizontal flip and
            a random scale with crop/pad), or a sequence of Keras 3 core box-aware layers
            (``bounding_box_format="xyxy"``; see :func:`~kdet.data.augment_batch`);
            ``None``/``False`` for none.
        shuffle: shuffle each epoch; an int sets the shuffle buffer (``True``: the whole
            dataset when its size is known, else 1024 examples).
        seed: seed of the shuffle and the augmentation, for a reproducible order.
        cache: cache decoded, resized ``uint8`` images: ``True`` in memory, a path for a
            file cache (TensorFlow writes ``<path>.index`` and ``<path>.data-*``),
            ``False`` for none.
        max_boxes: pad (or cut) every batch's box axis to this length; ``None`` pads to
            the most boxes in the batch.
        bounding_box_format: box format of the output (KerasCV names).
        drop_remainder: drop the last, smaller batch.

    Returns:
        ``tf.data.Dataset`` of ``{"images": float32 (B, H, W, 3), "bounding_boxes":
        {"boxes": float32 (B, N, 4), "classes": float32 (B, N)}}``, padded with ``-1``.

    Raises:
        ValueError: for an unknown ``normalization`` or ``bounding_box_format`` or a bad
            size. Undecodable images fail when iterating, with
            ``tf.errors.InvalidArgumentError`` naming the file.

    Example:
        >>> dataset = build_pipeline(examples, image_size=(64, 64), batch_size=2)
        ... # doctest: +SKIP
    """
    _check_arguments(image_size, batch_size, normalization, max_boxes)
    bounding_box_format = validate_format(bounding_box_format, argument="bounding_box_format")
    image_size = (int(image_size[0]), int(image_size[1]))
    autotune = tf.data.AUTOTUNE

    if augment is True:
        augmenters = default_augmenters(image_size, seed=seed)
    elif not augment:
        augmenters = []
    else:
        augmenters = list(augment)

    def shuffled(dataset):
        if shuffle is True:
            size = int(dataset.cardinality())
            buffer = size if size > 0 else _DEFAULT_SHUFFLE_BUFFER
        else:
            buffer = int(shuffle)
        return dataset.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)

    dataset = examples
    if shuffle and not cache:
        dataset = shuffled(dataset)  # cheap: file names, before decoding
    dataset = dataset.map(
        _decode_and_resize(image_size, keep_aspect_ratio, max_boxes),
        num_parallel_calls=autotune,
        deterministic=True,
    )
    if cache:
        if cache is True:
            dataset = dataset.cache()
        else:
            Path(cache).parent.mkdir(parents=True, exist_ok=True)
            dataset = dataset.cache(os.fspath(cache))
        if shuffle:
            dataset = shuffled(dataset)
    dataset = dataset.padded_batch(
        batch_size,
        padded_shapes={
            "images": (*image_size, 3),
            "boxes": (max_boxes, 4),
            "classes": (max_boxes,),
        },
        padding_values={
            "images": tf.constant(0, tf.uint8),
            "boxes": -1.0,
            "classes": -1.0,
        },
        drop_remainder=drop_remainder,
    )
    finish = _finish(normalization, bounding_box_format)
    if augmenters:
        dataset = dataset.map(_batch_dict, num_parallel_calls=autotune)
        # Sequential: the layers draw from stateful seed generators, so a parallel map
        # would hand out the draws in a nondeterministic order.
        dataset = dataset.map(lambda batch: augment_batch(batch, augmenters, max_boxes))
        dataset = dataset.map(finish, num_parallel_calls=autotune)
    else:
        # One map instead of two when nothing runs between them: fewer stages handing
        # batches between threads.
        dataset = dataset.map(lambda batch: finish(_batch_dict(batch)), num_parallel_calls=autotune)
    return dataset.prefetch(autotune)
