"""tf.data inputs for YOLOv8: records -> KerasCV batches, with box-aware augmentation.

Training batches go through KerasCV's own box-aware layers (``RandomFlip``, ``RandomShear``,
``JitteredResize``, optionally ``Mosaic``) on ragged batches, as KerasCV expects, then are
padded with -1 to ``max_boxes``. Evaluation images are letterboxed (aspect ratio kept,
padded at the bottom/right) by :func:`letterbox`, the same function the exported SavedModel
uses, so a box maps back to the original image by dividing by one scale.

Example:
    >>> train = training_dataset(record_set.split("train"), image_size=(128, 128),
    ...                          batch_size=8)                       # doctest: +SKIP
    >>> images, labels = next(iter(train))                           # doctest: +SKIP
    >>> images.shape, labels["boxes"].shape                          # doctest: +SKIP
    (TensorShape([8, 128, 128, 3]), TensorShape([8, 32, 4]))
"""

from __future__ import annotations

import keras_cv
import numpy as np
import tensorflow as tf

from kdet.datasets.records import RecordSet


def letterbox(image: tf.Tensor, image_size: tuple[int, int]) -> tuple[tf.Tensor, tf.Tensor]:
    """Resize ``image`` (H, W, 3) to fit ``image_size`` keeping its aspect ratio, pad the
    bottom/right with zeros; returns the float32 image and the scale (new / old)."""
    height, width = image_size
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = tf.minimum(height / shape[0], width / shape[1])
    new_size = tf.cast(tf.round(shape * scale), tf.int32)
    resized = tf.image.resize(tf.cast(image, tf.float32), new_size)
    padded = tf.image.pad_to_bounding_box(resized, 0, 0, height, width)
    return padded, scale


def _examples(record_set: RecordSet) -> tf.data.Dataset:
    """(path, boxes xyxy float32 (N, 4), classes float32 (N,)) per record, as ragged rows."""
    if not len(record_set):
        raise ValueError(f"{record_set.root}: no records to build a dataset from")
    paths = [str(record_set.image_path(record)) for record in record_set.records]
    boxes = tf.ragged.constant(
        [np.asarray(r.boxes, np.float32).reshape(-1, 4) for r in record_set.records],
        ragged_rank=1,
        dtype=tf.float32,
    )
    classes = tf.ragged.constant(
        [np.asarray(r.classes, np.float32) for r in record_set.records], dtype=tf.float32
    )
    return tf.data.Dataset.from_tensor_slices((paths, boxes, classes))


def _read(path, boxes, classes):
    image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return {
        "images": tf.cast(image, tf.float32),
        "bounding_boxes": {"boxes": boxes, "classes": classes},
    }


def augmenters(
    image_size: tuple[int, int],
    *,
    flip: bool = True,
    scale_range=(0.5, 1.5),
    shear: float = 0.0,
    mosaic: bool = False,
    bounding_box_format: str = "xyxy",
    seed: int | None = None,
) -> list:
    """KerasCV box-aware augmentation layers, applied in order to a ragged batch."""
    layers = []
    if flip:
        layers.append(
            keras_cv.layers.RandomFlip(
                mode="horizontal", bounding_box_format=bounding_box_format, seed=seed
            )
        )
    if shear:
        layers.append(
            keras_cv.layers.RandomShear(
                x_factor=shear,
                y_factor=shear,
                bounding_box_format=bounding_box_format,
                seed=seed,
            )
        )
    layers.append(
        keras_cv.layers.JitteredResize(
            target_size=tuple(image_size),
            scale_factor=tuple(scale_range),
            bounding_box_format=bounding_box_format,
            seed=seed,
        )
    )
    if mosaic:
        layers.append(keras_cv.layers.Mosaic(bounding_box_format=bounding_box_format, seed=seed))
    return layers


def training_dataset(
    record_set: RecordSet,
    *,
    image_size: tuple[int, int],
    batch_size: int,
    flip: bool = True,
    scale_range=(0.5, 1.5),
    shear: float = 0.0,
    mosaic: bool = False,
    max_boxes: int = 32,
    shuffle: bool = True,
    seed: int = 0,
    bounding_box_format: str = "xyxy",
) -> tf.data.Dataset:
    """An endless-friendly (one pass per epoch) dataset of augmented ``(images, labels)``.

    Images are float32 in ``[0, 255]``; labels are ``{"boxes": (B, max_boxes, 4),
    "classes": (B, max_boxes)}`` in ``bounding_box_format``, padded with -1.
    """
    layers = augmenters(
        image_size,
        flip=flip,
        scale_range=scale_range,
        shear=shear,
        mosaic=mosaic,
        bounding_box_format=bounding_box_format,
        seed=seed,
    )

    def augment(batch):
        batch["bounding_boxes"] = keras_cv.bounding_box.convert_format(
            batch["bounding_boxes"],
            source="xyxy",
            target=bounding_box_format,
            images=batch["images"],
        )
        for layer in layers:
            batch = layer(batch)
        return batch

    def to_dense(batch):
        labels = keras_cv.bounding_box.to_dense(batch["bounding_boxes"], max_boxes=max_boxes)
        return tf.cast(batch["images"], tf.float32), {
            "boxes": tf.cast(labels["boxes"], tf.float32),
            "classes": tf.cast(labels["classes"], tf.float32),
        }

    dataset = _examples(record_set).map(_read, num_parallel_calls=tf.data.AUTOTUNE).cache()
    if shuffle:
        dataset = dataset.shuffle(len(record_set), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.ragged_batch(batch_size, drop_remainder=True)
    dataset = dataset.map(augment, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.map(to_dense, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def evaluation_dataset(
    record_set: RecordSet,
    *,
    image_size: tuple[int, int],
    batch_size: int,
    max_boxes: int = 32,
    bounding_box_format: str = "xyxy",
) -> tf.data.Dataset:
    """Letterboxed ``(images, labels)`` in record order, for validation loss.

    Boxes are scaled with the image; for metrics in original pixels use
    :func:`letterboxed_images` and divide predictions by its scales.
    """

    def prepare(path, boxes, classes):
        example = _read(path, boxes, classes)
        image, scale = letterbox(example["images"], image_size)
        labels = {"boxes": boxes * scale, "classes": classes}
        labels = keras_cv.bounding_box.convert_format(
            labels, source="xyxy", target=bounding_box_format, images=image
        )
        return {"images": image, "bounding_boxes": labels}

    def to_dense(batch):
        labels = keras_cv.bounding_box.to_dense(batch["bounding_boxes"], max_boxes=max_boxes)
        return batch["images"], {
            "boxes": tf.cast(labels["boxes"], tf.float32),
            "classes": tf.cast(labels["classes"], tf.float32),
        }

    dataset = _examples(record_set).map(prepare, num_parallel_calls=tf.data.AUTOTUNE).cache()
    dataset = dataset.ragged_batch(batch_size)
    return dataset.map(to_dense).prefetch(tf.data.AUTOTUNE)


def letterboxed_images(
    record_set: RecordSet, *, image_size: tuple[int, int], batch_size: int
) -> tf.data.Dataset:
    """Batches of ``(letterboxed images, scales)`` in record order (for prediction)."""

    def prepare(path, boxes, classes):
        return letterbox(_read(path, boxes, classes)["images"], image_size)

    dataset = _examples(record_set).map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)
