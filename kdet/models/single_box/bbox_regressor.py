"""The bounding-box regressor: a backbone and a dense head predicting one box per image.

After the PyImageSearch tutorial: VGG16 without its top (frozen) -> Flatten -> Dense
128 -> 64 -> 32 -> Dense 4 sigmoid (relative ``xyxy``), MSE, Adam 1e-4, 224x224 input.

Example:
    >>> from kdet.models import get_model
    >>> model = get_model("bbox_regressor", backbone="small_cnn", image_size=(64, 64))
    >>> model.get_layer("bounding_box").units
    4
"""

from collections.abc import Sequence

import keras

from kdet.models.registry import register_model
from kdet.models.single_box.builder import build_single_box_model


@register_model("bbox_regressor")
def build_bbox_regressor(
    *,
    backbone: str = "vgg16",
    weights=None,
    image_size: Sequence[int] = (224, 224),
    trainable_blocks=0,
    box_units: Sequence[int] = (128, 64, 32),
    box_loss: str = "mse",
    learning_rate: float = 1e-4,
    compile: bool = True,
) -> keras.Model:
    """Build the one-box regressor.

    Reference: A. Rosebrock, "Object detection: Bounding box regression with Keras,
    TensorFlow, and Deep Learning", PyImageSearch, 2020.

    Args:
        backbone: ``"vgg16"``, ``"mobilenet_v2"`` or ``"small_cnn"``.
        weights: ``"imagenet"``, ``None`` (from scratch) or a ``.weights.h5`` path.
        image_size: ``(height, width)`` of the input images (values ``0..255``).
        trainable_blocks: backbone blocks that train (``0`` frozen, ``"all"``, or ``k``).
        box_units: hidden widths of the box head.
        box_loss: ``"mse"``, ``"mae"``, ``"huber"`` or ``"giou"``.
        learning_rate: Adam's learning rate.
        compile: compile the model.

    Returns:
        ``keras.Model``: images -> ``{"bounding_box": (B, 4) relative xyxy, float32}``.
    """
    return build_single_box_model(
        name="bbox_regressor",
        backbone=backbone,
        weights=weights,
        image_size=image_size,
        trainable_blocks=trainable_blocks,
        box_units=box_units,
        box_loss=box_loss,
        learning_rate=learning_rate,
        compile=compile,
    )
