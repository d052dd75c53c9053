"""Raw examples for the pipeline: from a :class:`~kdet.datasets.records.RecordSet` or TFDS.

A raw example is a dict with

- ``"filename"``: ``tf.string``, the image's path (read from disk when there is no
  ``"image"``) or name (used in error messages);
- ``"image"`` (optional): ``tf.string`` encoded bytes or ``tf.uint8 (H, W, 3)`` pixels;
- ``"boxes"``: ``float32 (N, 4)`` absolute-pixel ``xyxy``;
- ``"classes"``: ``int32 (N,)``.

Example:
    >>> examples = from_records(RecordSet.load("data/raccoon"), split="train")  # doctest: +SKIP
    >>> sorted(examples.element_spec)  # doctest: +SKIP
    ['boxes', 'classes', 'filename']
"""

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from kdet.data.decode import decode_image
from kdet.datasets.records import RecordSet


def from_records(record_set: RecordSet, split: str | None = None) -> tf.data.Dataset:
    """Raw examples (image path, boxes, classes) of a record set, in record order.

    Args:
        record_set: the dataset's records.
        split: keep only the records of this split (``None``: all records).

    Returns:
        ``tf.data.Dataset`` of ``{"filename", "boxes", "classes"}`` dicts.

    Raises:
        ValueError: when ``split`` has no records.

    Example:
        >>> examples = from_records(record_set, split="test")  # doctest: +SKIP
    """
    if split is not None:
        chosen = record_set.split(split)
        if not chosen.records:
            found = sorted({str(r.split) for r in record_set.records})
            raise ValueError(
                f"record set {record_set.name!r} has no records in split {split!r} "
                f"(splits: {found}). Received: split={split!r}"
            )
        record_set = chosen
    records = record_set.records
    filenames = [str(record_set.image_path(r)) for r in records]
    counts = np.array([len(r.classes) for r in records], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    all_boxes = np.concatenate(
        [r.boxes_array() for r in records] or [np.zeros((0, 4), np.float32)]
    ).reshape(-1, 4)
    all_classes = np.concatenate(
        [r.classes_array() for r in records] or [np.zeros((0,), np.int32)]
    ).astype(np.int32)
    all_boxes = tf.constant(all_boxes, tf.float32)
    all_classes = tf.constant(all_classes, tf.int32)

    def to_example(filename, start, count):
        return {
            "filename": filename,
            "boxes": all_boxes[start : start + count],
            "classes": all_classes[start : start + count],
        }

    slices = tf.data.Dataset.from_tensor_slices((filenames, starts, counts))
    return slices.map(to_example, num_parallel_calls=tf.data.AUTOTUNE)


def _tfds_to_example(example):
    image = decode_image(example["image"], example["image/filename"])
    shape = tf.cast(tf.shape(image), tf.float32)
    # TFDS boxes are normalised yxyx; kdet's are absolute xyxy.
    bbox = tf.reshape(example["objects"]["bbox"], (-1, 4))
    boxes = tf.gather(bbox, [1, 0, 3, 2], axis=1) * tf.stack(
        [shape[1], shape[0], shape[1], shape[0]]
    )
    return {
        "filename": example["image/filename"],
        "image": image,
        "boxes": boxes,
        "classes": tf.cast(example["objects"]["label"], tf.int32),
    }


def from_tfds(name: str, split: str, data_dir=None) -> tf.data.Dataset:
    """Raw examples (decoded image, boxes, classes) of a prepared TFDS dataset.

    Works for any TFDS detection dataset with the features ``image``,
    ``image/filename`` and ``objects/{bbox, label}``, such as the ``kdet_*`` datasets of
    :mod:`kdet.datasets.tfds_builders`.

    Args:
        name: TFDS name, e.g. ``"kdet_raccoon"``.
        split: TFDS split, e.g. ``"train"``.
        data_dir: TFDS data folder the dataset was prepared in.

    Returns:
        ``tf.data.Dataset`` of ``{"filename", "image", "boxes", "classes"}`` dicts, in the
        dataset's file order.

    Example:
        >>> examples = from_tfds("kdet_raccoon", "train", "data/tfds")  # doctest: +SKIP
    """
    dataset = tfds.load(
        name,
        split=split,
        data_dir=None if data_dir is None else str(data_dir),
        download=False,
        shuffle_files=False,
        decoders={"image": tfds.decode.SkipDecoding()},
    )
    return dataset.map(_tfds_to_example, num_parallel_calls=tf.data.AUTOTUNE)
