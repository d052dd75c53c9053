"""The multi-class detector: one backbone, a box head and a softmax class head.

After the PyImageSearch tutorial: VGG16 (frozen) -> Flatten -> box head (Dense 128 -> 64
-> 32 -> 4 sigmoid) and class head (Dense 512 -> Dropout 0.5 -> Dense 512 -> Dropout 0.5
-> softmax), losses weighted 1 and 1.

Example:
    >>> from kdet.models import get_model
    >>> model = get_model("multiclass_detector", num_classes=3, backbone="small_cnn",
    ...                   image_size=(64, 64))
    >>> model.get_layer("class_label").units
    3
"""

from collections.abc import Mapping, Sequence

import keras

from kdet.models.registry import register_model
from kdet.models.single_box.builder import build_single_box_model


@register_model("multiclass_detector")
def build_multiclass_detector(
    *,
    num_classes: int = 3,
    backbone: str = "vgg16",
    weights=None,
    image_size: Sequence[int] = (224, 224),
    trainable_blocks=0,
    box_units: Sequence[int] = (128, 64, 32),
    class_units: Sequence[int] = (512, 512),
    class_dropout: float = 0.5,
    box_loss: str = "mse",
    loss_weights: Mapping[str, float] | None = None,
    learning_rate: float = 1e-4,
    compile: bool = True,
) -> keras.Model:
    """Build the box + class model.

    Reference: A. Rosebrock, "Multi-class object detection and bounding box regression
    with Keras, TensorFlow, and Deep Learning", PyImageSearch, 2020.

    Args:
        num_classes: classes of the softmax head (>= 2).
        backbone: ``"vgg16"``, ``"mobilenet_v2"`` or ``"small_cnn"``.
        weights: ``"imagenet"``, ``None`` (from scratch) or a ``.weights.h5`` path.
        image_size: ``(height, width)`` of the input images (values ``0..255``).
        trainable_blocks: backbone blocks that train (``0`` frozen, ``"all"``, or ``k``).
        box_units: hidden widths of the box head.
        class_units: hidden widths of the class head.
        class_dropout: dropout after each hidden class layer.
        box_loss: ``"mse"``, ``"mae"``, ``"huber"`` or ``"giou"``.
        loss_weights: ``{"bounding_box": 1.0, "class_label": 1.0}`` by default.
        learning_rate: Adam's learning rate.
        compile: compile the model.

    Returns:
        ``keras.Model``: images -> ``{"bounding_box": (B, 4) relative xyxy,
        "class_label": (B, num_classes) probabilities}``, both float32.
    """
    return build_single_box_model(
        name="multiclass_detector",
        backbone=backbone,
        weights=weights,
        image_size=image_size,
        trainable_blocks=trainable_blocks,
        box_units=box_units,
        num_classes=num_classes,
        class_units=class_units,
        class_dropout=class_dropout,
        box_loss=box_loss,
        loss_weights=loss_weights,
        learning_rate=learning_rate,
        compile=compile,
    )
