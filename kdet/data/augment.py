"""Box-aware augmentation of batches with Keras 3 core preprocessing layers.

Keras 3 core has no single jittered-resize layer (KerasCV's ``JitteredResize``), so the
default pipeline composes one from core layers: ``RandomZoom`` draws the scale and
``RandomTranslation`` the place of the crop or pad; both move, clip and drop boxes.

Example:
    >>> layers = default_augmenters((224, 224), seed=0)
    >>> [type(layer).__name__ for layer in layers]
    ['RandomFlip', 'RandomZoom', 'RandomTranslation']
"""

from collections.abc import Callable, Sequence

import keras
import tensorflow as tf

#: Range of the random scale of the default augmentation (as KerasCV's JitteredResize).
SCALE_RANGE = (0.75, 1.3)


def default_augmenters(
    image_size, seed: int | None = None, bounding_box_format: str = "xyxy"
) -> list:
    """The default training augmentation: horizontal flip, then a random scale and place.

    The image is scaled by a random factor in ``0.75..1.3`` (``RandomZoom``; a zoom of
    ``1 + f`` shows ``1 + f`` times the field of view, so the factor range is
    ``1 / 1.3 - 1 .. 1 / 0.75 - 1``), then shifted by up to 15 % of its size along each
    axis (``RandomTranslation``: the largest overhang of a 1.3x scale), and cropped or
    zero-padded back to ``image_size``. Boxes are moved and clipped to the image; a box
    left with no area gets class ``-1`` (dropped). Layers compute in ``float32`` under
    any global mixed-precision policy.

    Args:
        image_size: ``(height, width)`` of the batches (only checked; the layers keep
            their input's size).
        seed: seed for the layers' random draws (each layer gets ``seed + i``); ``None``
            draws a fresh seed.
        bounding_box_format: box format of the batches (``"xyxy"`` inside kdet pipelines).

    Returns:
        List of Keras layers, each taking and returning a Keras 3 batch dict
        ``{"images", "bounding_boxes": {"boxes", "labels"}}`` (see :func:`augment_batch`).

    Example:
        >>> flip, zoom, shift = default_augmenters((64, 64), seed=1)
    """
    if len(tuple(image_size)) != 2:
        raise ValueError(f"image_size must be (height, width). Received: {image_size=}")

    def layer_seed(offset):
        return None if seed is None else seed + offset

    low, high = SCALE_RANGE
    zoom = (1.0 / high - 1.0, 1.0 / low - 1.0)
    shift = (-0.15, 0.15)
    common = {"dtype": "float32", "bounding_box_format": bounding_box_format}
    return [
        keras.layers.RandomFlip(mode="horizontal", seed=layer_seed(0), **common),
        keras.layers.RandomZoom(
            height_factor=zoom,
            width_factor=None,  # Same factor on both axes: keeps the aspect ratio.
            fill_mode="constant",
            fill_value=0.0,
            seed=layer_seed(1),
            **common,
        ),
        keras.layers.RandomTranslation(
            height_factor=shift,
            width_factor=shift,
            fill_mode="constant",
            fill_value=0.0,
            seed=layer_seed(2),
            **common,
        ),
    ]


def augment_batch(batch: dict, augmenters: Sequence[Callable], max_boxes: int | None = None):
    """Apply augmenters in order to a kdet batch dict and return a kdet batch again.

    The augmenters see Keras 3 core's convention (``bounding_boxes["labels"]``), so any
    ``keras.layers`` preprocessing layer built with ``bounding_box_format=`` works. Core
    layers keep the box axis dense and mark boxes they drop with label ``-1``; here such
    rows become ``-1`` boxes again, the kept boxes move to the front (in order) and the box
    axis is padded or cut to ``max_boxes``.

    Args:
        batch: ``{"images": (B, H, W, 3), "bounding_boxes": {"boxes", "classes"}}``, dense
            and ``-1`` padded.
        augmenters: callables taking and returning a Keras 3 batch dict (Keras layers).
        max_boxes: pad or cut the box axis to this length (``None``: keep its length).

    Returns:
        The augmented batch dict with dense, ``-1`` padded boxes and classes.

    Example:
        >>> augmented = augment_batch(batch, default_augmenters((64, 64)))  # doctest: +SKIP
    """
    data = {
        "images": batch["images"],
        "bounding_boxes": {
            "boxes": batch["bounding_boxes"]["boxes"],
            "labels": batch["bounding_boxes"]["classes"],
        },
    }
    for augmenter in augmenters:
        data = augmenter(data)
    boxes = tf.convert_to_tensor(data["bounding_boxes"]["boxes"], tf.float32)
    classes = tf.cast(data["bounding_boxes"]["labels"], tf.float32)
    # The layers clip padding rows (-1 boxes) into the image: mark every unlabelled row.
    valid = classes >= 0
    boxes = tf.where(valid[..., None], boxes, -1.0)
    classes = tf.where(valid, classes, -1.0)
    order = tf.argsort(tf.cast(~valid, tf.int32), axis=-1, stable=True)
    boxes = tf.gather(boxes, order, batch_dims=1)
    classes = tf.gather(classes, order, batch_dims=1)
    if max_boxes is not None:
        pad = tf.maximum(max_boxes - tf.shape(classes)[1], 0)
        boxes = tf.pad(boxes[:, :max_boxes], [[0, 0], [0, pad], [0, 0]], constant_values=-1.0)
        classes = tf.pad(classes[:, :max_boxes], [[0, 0], [0, pad]], constant_values=-1.0)
        boxes = tf.ensure_shape(boxes, [None, max_boxes, 4])
        classes = tf.ensure_shape(classes, [None, max_boxes])
    images = tf.cast(data["images"], tf.float32)
    return {"images": images, "bounding_boxes": {"boxes": boxes, "classes": classes}}
