"""Box-aware augmentation of batches with KerasCV layers.

Example:
    >>> layers = default_augmenters((224, 224), seed=0)
    >>> [type(layer).__name__ for layer in layers]
    ['RandomFlip', 'JitteredResize']
"""

from collections.abc import Callable, Sequence

import keras_cv
import tensorflow as tf


def default_augmenters(
    image_size, seed: int | None = None, bounding_box_format: str = "xyxy"
) -> list:
    """The default training augmentation: horizontal flip, then jittered resize.

    ``JitteredResize`` scales the image by a random factor in ``0.75..1.3``, crops or pads
    it back to ``image_size`` at a random place and moves, clips and drops boxes to match.

    Args:
        image_size: ``(height, width)`` of the batches.
        seed: seed for the layers' random draws.
        bounding_box_format: box format of the batches (``"xyxy"`` inside kdet pipelines).

    Returns:
        List of KerasCV layers, each taking and returning a KerasCV batch dict.

    Example:
        >>> flip, jitter = default_augmenters((64, 64), seed=1)
    """
    layers = [
        keras_cv.layers.RandomFlip(
            dtype="float32", mode="horizontal", bounding_box_format=bounding_box_format, seed=seed
        ),
        keras_cv.layers.JitteredResize(
            dtype="float32",
            target_size=tuple(image_size),
            scale_factor=(0.75, 1.3),
            bounding_box_format=bounding_box_format,
            seed=seed,
        ),
    ]
    if seed is not None:
        # keras-cv 0.9 layers fall back to TensorFlow's global generator when the seed is
        # falsy (seed=0), and JitteredResize never hands its seed to its base class. Give
        # each layer its own seeded generator (the attribute their base class documents
        # for this) so that a seed fixes the augmentation.
        for offset, layer in enumerate(layers):
            layer._random_generator = tf.random.Generator.from_seed(seed + offset)
    return layers


def augment_batch(batch: dict, augmenters: Sequence[Callable], max_boxes: int | None = None):
    """Apply augmenters in order to a KerasCV batch dict and return dense boxes again.

    KerasCV layers may return ragged boxes (and drop boxes pushed out of the image);
    the result is made dense and ``-1`` padded with ``keras_cv.bounding_box.to_dense``.

    Args:
        batch: ``{"images": (B, H, W, 3), "bounding_boxes": {"boxes", "classes"}}``.
        augmenters: callables taking and returning such a dict (KerasCV layers).
        max_boxes: pad or cut the box axis to this length (``None``: longest in batch).

    Returns:
        The augmented batch dict with dense boxes and classes.

    Example:
        >>> augmented = augment_batch(batch, default_augmenters((64, 64)))  # doctest: +SKIP
    """
    for augmenter in augmenters:
        batch = augmenter(batch)
    batch = dict(batch)
    batch["bounding_boxes"] = keras_cv.bounding_box.to_dense(
        batch["bounding_boxes"], max_boxes=max_boxes
    )
    return batch
