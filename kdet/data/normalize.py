"""Pixel normalisation per backbone, applied to float32 images in ``0..255``.

Example:
    >>> import tensorflow as tf
    >>> float(normalize(tf.fill((1, 2, 2, 3), 255.0), "mobilenet_v2")[0, 0, 0, 0])
    1.0
"""

import keras
import tensorflow as tf

NORMALIZATIONS = {
    # Raw 0..255 pixels (KerasCV YOLOv8 and most KerasCV backbones rescale internally).
    "none": lambda images: images,
    "unit": lambda images: images / 255.0,
    # Caffe style: RGB -> BGR, ImageNet mean subtracted (what VGG16 weights expect).
    "vgg16": keras.applications.vgg16.preprocess_input,
    # -1..1 (what MobileNetV2 weights expect).
    "mobilenet_v2": keras.applications.mobilenet_v2.preprocess_input,
}


def normalize(images: tf.Tensor, normalization: str) -> tf.Tensor:
    """Normalise float32 images in ``0..255`` for a backbone.

    Args:
        images: float32 ``(..., H, W, 3)`` RGB images in ``0..255``.
        normalization: one of ``"none"`` (``0..255``), ``"unit"`` (``0..1``), ``"vgg16"``
            (``keras.applications.vgg16.preprocess_input``) or ``"mobilenet_v2"``
            (``-1..1``).

    Returns:
        float32 tensor of the same shape.

    Example:
        >>> float(normalize(tf.fill((1, 1, 3), 255.0), "unit")[0, 0, 0])
        1.0
    """
    if normalization not in NORMALIZATIONS:
        raise ValueError(
            f"normalization must be one of {sorted(NORMALIZATIONS)}. "
            f"Received: normalization={normalization!r}"
        )
    return NORMALIZATIONS[normalization](images)
