"""The R-CNN region classifier: a backbone and the tutorial's small head.

The head is the R-CNN tutorial's: ``AveragePooling2D(7x7) -> Flatten -> Dense(128,
relu) -> Dropout(0.5) -> Dense(num_classes + 1, softmax)``, class 0 being background.
The pooling window is the feature map's size when that is under 7x7 (small inputs), so
the pooling is global either way. The model takes raw pixels (float ``0..255``) and
normalises them itself, so detectors feed it crops as they are. With
``box_regression=True`` (R-CNN as in the paper) a linear ``box_delta`` layer beside the
classifier predicts per-class box corrections of the crop (see
:mod:`kdet.models.rcnn.box_coder`).

Example:
    >>> model = build_rcnn_classifier(num_classes=1, backbone="small_cnn", input_size=64)
    >>> model.output_shape
    (None, 2)
    >>> model = build_rcnn_classifier(backbone="small_cnn", input_size=64, box_regression=True)
    >>> sorted(model.output_names)
    ['box_delta', 'class_label']
"""

from __future__ import annotations

import keras

from kdet.models.backbones import build_backbone
from kdet.models.registry import register_model

# How each backbone expects its input, from raw 0..255 pixels: (scale, offset).
_NORMALISATION = {
    "mobilenet_v2": (1 / 127.5, -1.0),  # keras.applications.mobilenet_v2.preprocess_input
    "small_cnn": (1 / 255.0, 0.0),
}


@register_model("rcnn_classifier")
def build_rcnn_classifier(
    *,
    num_classes: int = 1,
    backbone: str = "mobilenet_v2",
    input_size: int = 224,
    weights=None,
    trainable_blocks="all",
    dense_units: int = 128,
    dropout: float = 0.5,
    box_regression: bool = False,
) -> keras.Model:
    """Build the R-CNN region classifier.

    Reference: the PyImageSearch "R-CNN object detection with Keras, TensorFlow and
    deep learning" tutorial (MobileNetV2 + this head).

    Args:
        num_classes: object classes; the model outputs ``num_classes + 1`` probabilities,
            index 0 being background.
        backbone: ``"mobilenet_v2"`` or ``"small_cnn"`` (see :func:`build_backbone`).
        input_size: side of the square crops, in pixels.
        weights: backbone weights: ``None`` (random), ``"imagenet"`` or a
            ``.weights.h5`` path.
        trainable_blocks: passed to :func:`build_backbone`.
        dense_units: width of the hidden dense layer.
        dropout: dropout rate before the classifier.
        box_regression: add the per-class box-regression output.

    Returns:
        A ``keras.Model`` from float ``(B, input_size, input_size, 3)`` pixels in
        ``0..255`` to softmax probabilities ``(B, num_classes + 1)`` (layer
        ``class_label``); with ``box_regression``, to ``{"class_label": ..., "box_delta":
        (B, num_classes, 4)}`` (deltas as in
        :func:`kdet.models.rcnn.box_coder.encode_box_deltas`).
    """
    if backbone not in _NORMALISATION:
        raise ValueError(
            f"backbone must be one of {sorted(_NORMALISATION)}. Received: backbone={backbone!r}"
        )
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1. Received: {num_classes=}")
    shape = (input_size, input_size, 3)
    features = build_backbone(
        backbone, input_shape=shape, weights=weights, trainable_blocks=trainable_blocks
    )
    scale, offset = _NORMALISATION[backbone]
    inputs = keras.Input(shape, name="crops")
    x = keras.layers.Rescaling(scale, offset, name="normalise")(inputs)
    x = features(x)
    pool = (min(7, x.shape[1]), min(7, x.shape[2]))
    x = keras.layers.AveragePooling2D(pool_size=pool, name="head_pool")(x)
    x = keras.layers.Flatten(name="head_flatten")(x)
    x = keras.layers.Dense(dense_units, activation="relu", name="head_dense")(x)
    x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    outputs = keras.layers.Dense(
        num_classes + 1, activation="softmax", dtype="float32", name="class_label"
    )(x)
    name = f"rcnn_classifier_{backbone}"
    if not box_regression:
        return keras.Model(inputs, outputs, name=name)
    deltas = keras.layers.Dense(4 * num_classes, dtype="float32", name="box_delta_flat")(x)
    deltas = keras.layers.Reshape((num_classes, 4), name="box_delta")(deltas)
    return keras.Model(inputs, {"class_label": outputs, "box_delta": deltas}, name=name)
