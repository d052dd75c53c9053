"""Layers shared by the single-box models.

Example:
    >>> import numpy as np
    >>> layer = ImageNormalization("unit")
    >>> float(layer(np.full((1, 2, 2, 3), 255.0, "float32"))[0, 0, 0, 0])
    1.0
"""

import keras
from keras import ops

# The input scaling each backbone was trained with (Keras applications' preprocess_input).
BACKBONE_NORMALIZATION = {"vgg16": "vgg16", "mobilenet_v2": "mobilenet_v2", "small_cnn": "unit"}
_VGG16_BGR_MEAN = (103.939, 116.779, 123.68)


@keras.saving.register_keras_serializable(package="kdet")
class ImageNormalization(keras.layers.Layer):
    """Scale ``0..255`` RGB images the way a backbone expects, inside the model.

    Keeping the scaling in the model means a saved model takes plain pixel values. It is
    a small layer rather than ``keras.layers.Lambda`` so ``.keras`` files load in safe
    mode, and rather than ``Rescaling`` because VGG16's scaling also flips RGB to BGR.

    Args:
        mode: ``"vgg16"`` (BGR, ImageNet mean subtracted), ``"mobilenet_v2"``
            (``-1..1``) or ``"unit"`` (``0..1``).

    Example:
        >>> ImageNormalization("mobilenet_v2").mode
        'mobilenet_v2'
    """

    MODES = ("vgg16", "mobilenet_v2", "unit")

    def __init__(self, mode: str, **kwargs):
        kwargs.setdefault("dtype", "float32")  # scale in float32, the next layer casts
        super().__init__(**kwargs)
        if mode not in self.MODES:
            raise ValueError(f"mode must be one of {self.MODES}. Received: mode={mode!r}")
        self.mode = mode

    def call(self, images):
        images = ops.cast(images, self.compute_dtype)
        if self.mode == "unit":
            return images / 255.0
        if self.mode == "mobilenet_v2":
            return images / 127.5 - 1.0
        return ops.flip(images, axis=-1) - ops.convert_to_tensor(_VGG16_BGR_MEAN, images.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}
