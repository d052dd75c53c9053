"""Arrays and tf.data pipelines for datasets with exactly one box per image.

Images are decoded and resized (stretched, like the tutorials) once and kept in memory
as ``uint8``; boxes become relative ``xyxy`` so they survive the resize unchanged.

Example:
    >>> data = load_single_box_data(records, image_size=(64, 64))  # doctest: +SKIP
    >>> data.images.shape, data.boxes.shape  # doctest: +SKIP
    ((2033, 64, 64, 3), (2033, 4))
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from kdet.datasets.records import RecordSet
from kdet.errors import AnnotationError, ImageError


@dataclasses.dataclass
class SingleBoxData:
    """Images and one box per image, aligned by row.

    Attributes:
        images: ``uint8 (N, H, W, 3)``, resized to the model's input size.
        boxes: ``float32 (N, 4)`` relative ``xyxy``.
        classes: ``int32 (N,)`` ids into ``class_names``.
        image_sizes: ``int32 (N, 2)`` original ``(height, width)``.
        splits: the records' split names.
        class_names: names indexed by class id.
    """

    images: np.ndarray
    boxes: np.ndarray
    classes: np.ndarray
    image_sizes: np.ndarray
    splits: np.ndarray
    class_names: list[str]

    def __len__(self) -> int:
        return len(self.boxes)

    def subset(self, rows) -> SingleBoxData:
        """The rows ``rows`` (an index array or boolean mask)."""
        return dataclasses.replace(
            self,
            images=self.images[rows],
            boxes=self.boxes[rows],
            classes=self.classes[rows],
            image_sizes=self.image_sizes[rows],
            splits=self.splits[rows],
        )

    def select(self, split: str | None = None, class_names: Sequence[str] | None = None):
        """Row indices of ``split`` (``None``: all) whose class is in ``class_names``."""
        keep = np.ones(len(self), bool)
        if split is not None:
            keep &= self.splits == split
        if class_names is not None:
            unknown = set(class_names) - set(self.class_names)
            if unknown:
                raise ValueError(
                    f"Unknown classes {sorted(unknown)}; the dataset has {self.class_names}. "
                    f"Received: class_names={list(class_names)}"
                )
            ids = [self.class_names.index(name) for name in class_names]
            keep &= np.isin(self.classes, ids)
        return np.flatnonzero(keep)


def single_box_targets(record_set: RecordSet):
    """Relative ``xyxy`` boxes, class ids and ``(height, width)`` of every record.

    Raises:
        AnnotationError: naming the image of a record without exactly one box.
    """
    boxes, classes, sizes = [], [], []
    for record in record_set.records:
        if len(record.boxes) != 1:
            raise AnnotationError(
                record_set.image_path(record),
                f"single-box models need exactly one box per image, found {len(record.boxes)}",
            )
        scale = np.array([record.width, record.height] * 2, np.float32)
        boxes.append(record.boxes_array()[0] / scale)
        classes.append(record.classes[0])
        sizes.append((record.height, record.width))
    return (
        np.asarray(boxes, np.float32).reshape(-1, 4),
        np.asarray(classes, np.int32),
        np.asarray(sizes, np.int32).reshape(-1, 2),
    )


def resize_image(image: tf.Tensor, image_size: Sequence[int]) -> tf.Tensor:
    """Stretch an image to ``image_size`` (bilinear, ``float32`` out), as in training.

    The SavedModel's serving function uses the same call, so served and trained inputs
    match.
    """
    return tf.image.resize(tf.cast(image, tf.float32), image_size)


@tf.function(reduce_retracing=True)
def _decode_and_resize(data, image_size):
    image = tf.io.decode_image(data, channels=3, expand_animations=False)
    return tf.saturate_cast(tf.round(resize_image(image, image_size)), tf.uint8)


def load_images(paths: Sequence, image_size: Sequence[int]) -> np.ndarray:
    """Decode and resize image files into ``uint8 (N, H, W, 3)``.

    Raises:
        ImageError: naming a file that is missing or not a decodable image.
    """
    size = tf.constant([int(v) for v in image_size], tf.int32)
    images = np.empty((len(paths), int(image_size[0]), int(image_size[1]), 3), np.uint8)
    for i, path in enumerate(paths):
        try:
            images[i] = _decode_and_resize(tf.io.read_file(str(path)), size).numpy()
        except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError) as err:
            reason = err.message.splitlines()[0]
            raise ImageError(path, f"cannot read as an image ({reason})") from None
    return images


def load_single_box_data(record_set: RecordSet, *, image_size: Sequence[int]) -> SingleBoxData:
    """Every record of ``record_set`` as a :class:`SingleBoxData` at ``image_size``."""
    boxes, classes, sizes = single_box_targets(record_set)
    paths = [record_set.image_path(r) for r in record_set.records]
    return SingleBoxData(
        images=load_images(paths, image_size),
        boxes=boxes,
        classes=classes,
        image_sizes=sizes,
        splits=np.asarray([str(r.split) for r in record_set.records]),
        class_names=list(record_set.class_names),
    )


def random_flip_and_crop(images, boxes, crop: float = 0.5, seed=None):
    """Box-preserving augmentation of a batch: horizontal flip, then a random crop.

    The crop removes a random share (up to ``crop``) of the margin on each side of the
    box and stretches the rest back to the image size, so the box always stays whole.
    Hand-written because KerasCV's crops (``JitteredResize``, ``RandomCrop``) may cut or
    drop the only box, which a one-box regressor cannot learn from.

    Args:
        images: ``float32 (B, H, W, 3)``.
        boxes: ``float32 (B, 4)`` relative ``xyxy``.
        crop: the largest share of each margin that may be cut (``0`` for flips only).
        seed: a stateless seed ``(2,)`` int tensor, or ``None`` for stateful randomness.

    Returns:
        ``(images, boxes)`` augmented.
    """
    batch = tf.shape(images)[0]
    height, width = tf.shape(images)[1], tf.shape(images)[2]
    if seed is None:
        uniform = tf.random.uniform((batch, 5))
    else:
        uniform = tf.random.stateless_uniform((batch, 5), seed=seed)
    flip = uniform[:, 0] < 0.5
    images = tf.where(flip[:, None, None, None], tf.reverse(images, axis=[2]), images)
    x1, y1, x2, y2 = tf.unstack(boxes, axis=-1)
    x1, x2 = tf.where(flip, 1.0 - x2, x1), tf.where(flip, 1.0 - x1, x2)
    cx1 = x1 * crop * uniform[:, 1]
    cy1 = y1 * crop * uniform[:, 2]
    cx2 = 1.0 - (1.0 - x2) * crop * uniform[:, 3]
    cy2 = 1.0 - (1.0 - y2) * crop * uniform[:, 4]
    # crop_and_resize puts 0 and 1 on the first and last pixel centres, half a pixel off
    # the box coordinates' edges: negligible next to the crop itself.
    crops = tf.stack([cy1, cx1, cy2, cx2], axis=-1)
    images = tf.image.crop_and_resize(images, crops, tf.range(batch), (height, width))
    w, h = cx2 - cx1, cy2 - cy1
    boxes = tf.stack([(x1 - cx1) / w, (y1 - cy1) / h, (x2 - cx1) / w, (y2 - cy1) / h], axis=-1)
    return images, tf.clip_by_value(boxes, 0.0, 1.0)


def make_dataset(
    images: np.ndarray,
    targets: dict,
    *,
    batch_size: int,
    shuffle: bool = False,
    augment: bool = False,
    crop: float = 0.5,
    seed: int | None = None,
) -> tf.data.Dataset:
    """A ``tf.data.Dataset`` of ``(float32 images, targets)`` batches from in-memory arrays.

    Args:
        images: ``uint8 (N, H, W, 3)`` (or backbone features when training a head).
        targets: ``{"bounding_box": (N, 4), "class_label": (N,)}`` (keys the model has).
        batch_size: examples per batch.
        shuffle: reshuffle every epoch.
        augment: apply :func:`random_flip_and_crop` (images only).
        crop: passed to :func:`random_flip_and_crop`.
        seed: seed of the shuffle and the augmentation.
    """
    dataset = tf.data.Dataset.from_tensor_slices((images, targets))
    if shuffle:
        dataset = dataset.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)

    def to_float(x, y):
        return tf.cast(x, tf.float32), y

    dataset = dataset.map(to_float, num_parallel_calls=tf.data.AUTOTUNE)
    if augment:
        generator = tf.random.Generator.from_seed(seed if seed is not None else 0)

        def augmented(x, y):
            x, box = random_flip_and_crop(
                x, y["bounding_box"], crop=crop, seed=generator.uniform_full_int((2,), tf.int32)
            )
            return x, {**y, "bounding_box": box}

        dataset = dataset.map(augmented)
    return dataset.prefetch(tf.data.AUTOTUNE)
