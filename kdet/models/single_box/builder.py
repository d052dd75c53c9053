"""One builder behind both single-box models: backbone, box head, optional class head.

The model takes ``float32`` RGB images with values ``0..255`` of size ``image_size`` and
returns ``{"bounding_box": (B, 4) relative xyxy}`` (plus ``"class_label": (B, C)``
probabilities with a class head). Outputs are ``float32`` under mixed precision too.
Layer names are stable: ``normalize``, the backbone (``vgg16``, ``mobilenet_v2``,
``small_cnn``), ``flatten``, ``box_dense_K``, ``bounding_box``, ``class_dense_K``,
``class_dropout_K``, ``class_label``.

Example:
    >>> model = build_single_box_model(backbone="small_cnn", image_size=(64, 64),
    ...                                num_classes=3)
    >>> model.output_names
    ['bounding_box', 'class_label']
"""

from collections.abc import Mapping, Sequence

import keras
import numpy as np

from kdet.losses import GIoULoss
from kdet.metrics.keras_metrics import BoxIoU
from kdet.models.backbones import build_backbone
from kdet.models.single_box.layers import BACKBONE_NORMALIZATION, ImageNormalization

BOX_LOSSES = ("mse", "mae", "huber", "giou")


def build_single_box_model(
    *,
    name: str = "single_box_model",
    backbone: str = "vgg16",
    weights=None,
    image_size: Sequence[int] = (224, 224),
    trainable_blocks="all",
    box_units: Sequence[int] = (128, 64, 32),
    num_classes: int | None = None,
    class_units: Sequence[int] = (512, 512),
    class_dropout: float = 0.5,
    box_loss: str = "mse",
    loss_weights: Mapping[str, float] | None = None,
    learning_rate: float = 1e-4,
    compile: bool = True,
) -> keras.Model:
    """Build (and compile) a one-box-per-image model.

    Args:
        name: the model's name.
        backbone: ``"vgg16"``, ``"mobilenet_v2"`` or ``"small_cnn"``.
        weights: ``"imagenet"``, ``None`` or a ``.weights.h5`` path for the backbone.
        image_size: ``(height, width)`` of the input images.
        trainable_blocks: backbone blocks that train: ``"all"``, ``0`` (frozen) or ``k``.
        box_units: widths of the box head's hidden ``Dense`` layers.
        num_classes: ``None`` for a box head only, else the size of the softmax class head.
        class_units: widths of the class head's hidden ``Dense`` layers.
        class_dropout: dropout after each hidden class layer.
        box_loss: ``"mse"``, ``"mae"`` or ``"huber"`` on relative ``xyxy`` coordinates, or
            ``"giou"`` (:class:`kdet.losses.GIoULoss`, which trains the IoU itself).
        loss_weights: ``{"bounding_box": w, "class_label": w}`` (default 1 and 1).
        learning_rate: Adam's learning rate.
        compile: compile with Adam and the losses.

    Returns:
        A ``keras.Model`` with dict outputs ``bounding_box`` (and ``class_label``).
    """
    if len(tuple(image_size)) != 2 or min(image_size) < 32:
        raise ValueError(f"image_size must be (height, width) >= 32. Received: {image_size=}")
    if box_loss not in BOX_LOSSES:
        raise ValueError(f"box_loss must be one of {BOX_LOSSES}. Received: {box_loss=}")
    if num_classes is not None and num_classes < 2:
        raise ValueError(f"num_classes must be None or >= 2. Received: {num_classes=}")
    height, width = (int(v) for v in image_size)
    features_model = build_backbone(
        backbone,
        input_shape=(height, width, 3),
        weights=weights,
        trainable_blocks=trainable_blocks,
    )
    images = keras.Input((height, width, 3), name="images")
    x = ImageNormalization(BACKBONE_NORMALIZATION[backbone], name="normalize")(images)
    features = features_model(x)
    flat = keras.layers.Flatten(name="flatten")(features)

    x = flat
    for k, units in enumerate(box_units, start=1):
        x = keras.layers.Dense(units, activation="relu", name=f"box_dense_{k}")(x)
    outputs = {
        "bounding_box": keras.layers.Dense(
            4, activation="sigmoid", dtype="float32", name="bounding_box"
        )(x)
    }
    if num_classes is not None:
        x = flat
        for k, units in enumerate(class_units, start=1):
            x = keras.layers.Dense(units, activation="relu", name=f"class_dense_{k}")(x)
            x = keras.layers.Dropout(class_dropout, name=f"class_dropout_{k}")(x)
        outputs["class_label"] = keras.layers.Dense(
            num_classes, activation="softmax", dtype="float32", name="class_label"
        )(x)
    model = keras.Model(images, outputs, name=name)
    if compile:
        compile_single_box_model(model, box_loss, loss_weights, learning_rate)
    return model


def compile_single_box_model(
    model: keras.Model,
    box_loss: str = "mse",
    loss_weights: Mapping[str, float] | None = None,
    learning_rate: float = 1e-4,
) -> keras.Model:
    """Compile ``model`` (or its head, see :func:`split_at_backbone`) with Adam.

    The box output reports its mean IoU (``iou``); the class head's loss is sparse
    categorical cross-entropy on integer class ids and reports ``accuracy``.
    """
    outputs = model.output_names
    losses = {"bounding_box": box_loss_function(box_loss)}
    weights = {"bounding_box": 1.0}
    metrics = {"bounding_box": [BoxIoU("rel_xyxy", name="iou")]}
    if "class_label" in outputs:
        losses["class_label"] = "sparse_categorical_crossentropy"
        weights["class_label"] = 1.0
        metrics["class_label"] = ["accuracy"]
    unknown = set(loss_weights or {}) - set(losses)
    if unknown:
        raise ValueError(f"loss_weights keys must be in {sorted(losses)}. Received: {unknown}")
    weights.update(loss_weights or {})
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=losses,
        loss_weights=weights,
        metrics=metrics,
    )
    return model


def box_loss_function(box_loss: str):
    """The Keras loss named ``box_loss`` (see :func:`build_single_box_model`).

    GIoU on relative ``xyxy`` boxes equals GIoU in pixels: scaling x and y by the image's
    width and height scales every area by the same factor, which the ratios cancel.
    """
    if box_loss not in BOX_LOSSES:
        raise ValueError(f"box_loss must be one of {BOX_LOSSES}. Received: {box_loss=}")
    if box_loss == "giou":
        return GIoULoss(bounding_box_format="xyxy")
    return box_loss


def backbone_layer(model: keras.Model) -> keras.Model:
    """The backbone sub-model of a single-box model (the layer after ``normalize``)."""
    names = [layer.name for layer in model.layers]
    return model.layers[names.index("normalize") + 1]


def split_at_backbone(model: keras.Model) -> tuple[keras.Model, keras.Model]:
    """Split a single-box model into ``(feature_extractor, head)`` sharing its layers.

    ``feature_extractor`` maps images to backbone features; ``head`` maps features to the
    outputs. Training ``head`` trains ``model``'s head weights (the same variables), so
    ``model`` still takes images afterwards.

    Example:
        >>> model = build_single_box_model(backbone="small_cnn", image_size=(64, 64))
        >>> extractor, head = split_at_backbone(model)
        >>> head.input_shape
        (None, 4, 4, 128)
    """
    # The input of ``flatten`` is the backbone's output in this model's graph (a nested
    # model's own ``.output`` belongs to its inner graph).
    features = model.get_layer("flatten").input
    extractor = keras.Model(model.inputs, features, name=f"{model.name}_features")
    head = keras.Model(features, model.output, name=f"{model.name}_head")
    return extractor, head


def start_at_box(model: keras.Model, box, seed: int | None = None) -> None:
    """Make the box head start by predicting ``box`` (relative ``xyxy``), in place.

    The ``bounding_box`` layer's bias becomes the logit of ``box`` and its kernel small
    (normal, standard deviation 0.01), as detection heads initialise to a prior: training
    from scratch then starts at the mean-box baseline instead of at random boxes.
    """
    layer = model.get_layer("bounding_box")
    kernel, _ = layer.get_weights()
    box = np.clip(np.asarray(box, np.float64), 1e-3, 1 - 1e-3)
    rng = np.random.default_rng(seed)
    layer.set_weights(
        [
            rng.normal(0.0, 0.01, kernel.shape).astype(kernel.dtype),
            np.log(box / (1.0 - box)).astype(kernel.dtype),
        ]
    )
