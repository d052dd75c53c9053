"""Feature-extractor backbones with one weights contract.

``weights="imagenet"`` downloads through Keras' own cache, ``weights=None`` starts from
random weights, and a path loads a local ``.weights.h5`` file. An offline machine asked
for ImageNet weights gets an error naming the other two choices, never random weights.

Example:
    >>> backbone = build_backbone("small_cnn", input_shape=(64, 64, 3), weights=None)
    >>> backbone.output_shape
    (None, 4, 4, 128)
"""

import os
import re

import keras

BACKBONES = ("vgg16", "mobilenet_v2", "small_cnn")

# Layer-name pattern that yields each layer's block number, per backbone.
_BLOCK_PATTERNS = {
    "vgg16": re.compile(r"^block(\d+)_"),
    "mobilenet_v2": re.compile(r"^block_(\d+)_"),
    "small_cnn": re.compile(r"^block(\d+)_"),
}


def build_backbone(
    name: str,
    *,
    input_shape=(224, 224, 3),
    weights=None,
    trainable_blocks="all",
):
    """Build a headless backbone.

    Args:
        name: one of ``"vgg16"``, ``"mobilenet_v2"``, ``"small_cnn"`` (a 4-block CNN for
            tests and tiny data).
        input_shape: ``(height, width, 3)``.
        weights: ``"imagenet"``, ``None`` (random) or a path to a ``.weights.h5`` file
            saved from the same backbone.
        trainable_blocks: ``"all"``, ``0`` (frozen) or ``k`` to train only the last ``k``
            blocks (VGG16 has 5, MobileNetV2 16, the small CNN 4).

    Returns:
        A ``keras.Model`` from images to the last feature map. VGG16 keeps Keras' layer
        names (``block5_conv3``...).
    """
    if name not in BACKBONES:
        raise ValueError(f"Unknown backbone. Choose one of {BACKBONES}. Received: name={name!r}")
    if not (weights in (None, "imagenet") or isinstance(weights, str | os.PathLike)):
        raise ValueError(
            "weights must be 'imagenet', None or a path to a .weights.h5 file. "
            f"Received: weights={weights!r}"
        )
    local_file = weights not in (None, "imagenet")
    if local_file and not os.path.isfile(weights):
        raise ValueError(f"Weights file not found. Received: weights={weights!r}")
    if weights == "imagenet" and name == "small_cnn":
        raise ValueError("small_cnn has no ImageNet weights. Received: weights='imagenet'")

    keras_weights = "imagenet" if weights == "imagenet" else None
    try:
        backbone = _BUILDERS[name](input_shape, keras_weights)
    except Exception as err:
        if keras_weights is None:
            raise
        raise RuntimeError(
            f"Could not get ImageNet weights for {name} ({err}). Without internet, use "
            "weights=None to train from scratch or weights='/path/file.weights.h5' for a "
            "local file."
        ) from err
    if local_file:
        backbone.load_weights(weights)
    set_trainable_blocks(backbone, name, trainable_blocks)
    return backbone


def set_trainable_blocks(backbone, name: str, trainable_blocks="all") -> None:
    """Freeze all but the last ``trainable_blocks`` blocks of ``backbone`` (in place)."""
    if trainable_blocks == "all":
        backbone.trainable = True
        return
    if not isinstance(trainable_blocks, int) or trainable_blocks < 0:
        raise ValueError(
            f"trainable_blocks must be 'all' or an int >= 0. Received: {trainable_blocks=}"
        )
    # Layers come in topological order: everything from the first layer of the first
    # trainable block on trains (the final 1x1 conv of MobileNetV2 too), the rest is frozen.
    pattern = _BLOCK_PATTERNS[name]
    layers = backbone.layers
    blocks = [
        (i, int(m.group(1))) for i, layer in enumerate(layers) if (m := pattern.match(layer.name))
    ]
    first_block = max(block for _, block in blocks) + 1 - trainable_blocks
    start = min((i for i, block in blocks if block >= first_block), default=len(layers))
    backbone.trainable = start < len(layers)
    for i, layer in enumerate(layers):
        layer.trainable = i >= start


def _vgg16(input_shape, weights):
    return keras.applications.VGG16(include_top=False, weights=weights, input_shape=input_shape)


def _mobilenet_v2(input_shape, weights):
    return keras.applications.MobileNetV2(
        include_top=False, weights=weights, input_shape=input_shape
    )


def _small_cnn(input_shape, weights):
    del weights  # random init only
    inputs = keras.Input(input_shape, name="images")
    x = inputs
    for block, filters in enumerate((16, 32, 64, 128), start=1):
        for conv in (1, 2):
            x = keras.layers.Conv2D(
                filters, 3, padding="same", use_bias=False, name=f"block{block}_conv{conv}"
            )(x)
            x = keras.layers.BatchNormalization(name=f"block{block}_bn{conv}")(x)
            x = keras.layers.ReLU(name=f"block{block}_relu{conv}")(x)
        x = keras.layers.MaxPooling2D(name=f"block{block}_pool")(x)
    return keras.Model(inputs, x, name="small_cnn")


_BUILDERS = {"vgg16": _vgg16, "mobilenet_v2": _mobilenet_v2, "small_cnn": _small_cnn}
