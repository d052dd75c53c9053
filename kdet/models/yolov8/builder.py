"""The registered ``yolov8`` builder: KerasCV's ``YOLOV8Detector`` built offline.

``keras_cv.models.YOLOV8Backbone.from_preset`` contacts Kaggle even for presets without
weights, so the backbone is built here from its stackwise configuration (the same numbers
KerasCV's presets use). A KerasCV preset name is still accepted as ``weights`` for users who
are online. The classification head's biases start at a small object prior, as in
Ultralytics' ``Detect.bias_init`` (and RetinaNet's focal-loss prior): KerasCV leaves them at
0 (every anchor scores 0.5), which swamps the first steps with background loss and is one
reason the stock model trains poorly from scratch (keras-cv#2442).

Example:
    >>> model = build_yolov8(num_classes=3, image_size=64, backbone_size="xs")
    >>> sorted(model(np.zeros((1, 64, 64, 3), "float32")))
    ['boxes', 'classes']
"""

from __future__ import annotations

import math
import os

import keras
import keras_cv
import numpy as np

from kdet import zoo
from kdet.errors import DownloadError, KdetError
from kdet.models.registry import register_model
from kdet.models.yolov8.decode import make_decoder

# stackwise_channels / stackwise_depth of KerasCV's yolo_v8_{xs,s,m,l,xl}_backbone presets.
BACKBONE_SIZES = {
    "xs": ([32, 64, 128, 256], [1, 2, 2, 1]),
    "s": ([64, 128, 256, 512], [1, 2, 2, 1]),
    "m": ([96, 192, 384, 576], [2, 4, 4, 2]),
    "l": ([128, 256, 512, 512], [3, 6, 6, 3]),
    "xl": ([160, 320, 640, 640], [3, 6, 6, 3]),
}
STRIDES = (8, 16, 32)
HEAD_LEVELS = (1, 2, 3)


def build_yolov8_backbone(size: str = "xs", image_size=320) -> keras.Model:
    """A randomly initialised ``keras_cv.models.YOLOV8Backbone`` of a preset's size.

    Args:
        size: one of ``"xs"``, ``"s"``, ``"m"``, ``"l"``, ``"xl"``.
        image_size: an int or ``(height, width)``; both must be multiples of 32.

    Example:
        >>> build_yolov8_backbone("xs", 64).count_params()
        1277680
    """
    if size not in BACKBONE_SIZES:
        raise ValueError(
            f"Unknown backbone size. Choose one of {tuple(BACKBONE_SIZES)}. Received: {size=}"
        )
    channels, depth = BACKBONE_SIZES[size]
    return keras_cv.models.YOLOV8Backbone(
        stackwise_channels=channels,
        stackwise_depth=depth,
        include_rescaling=True,
        activation="swish",
        input_shape=(*image_size_pair(image_size), 3),
    )


def image_size_pair(image_size) -> tuple[int, int]:
    """``320`` or ``(320, 320)`` -> ``(320, 320)``, checking the stride-32 constraint."""
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    if height % 32 or width % 32 or height <= 0 or width <= 0:
        raise ValueError(
            f"YOLOv8 needs an image size that is a positive multiple of 32. Received: "
            f"image_size={image_size!r}"
        )
    return int(height), int(width)


@register_model("yolov8")
def build_yolov8(
    *,
    num_classes: int,
    image_size=320,
    backbone_size: str = "xs",
    weights: str | os.PathLike | None = None,
    bounding_box_format: str = "xyxy",
    fpn_depth: int = 1,
    max_anchor_matches: int = 10,
    label_encoder_alpha: float = 0.5,
    label_encoder_beta: float = 6.0,
    confidence_threshold: float = 0.25,
    iou_threshold: float = 0.6,
    max_detections: int = 100,
    objects_per_image_prior: float | None = 5.0,
) -> keras_cv.models.YOLOV8Detector:
    """Build a KerasCV YOLOv8 detector that takes ``float32`` images in ``[0, 255]``.

    Reference: Jocher et al., Ultralytics YOLOv8 (2023); KerasCV ``YOLOV8Detector``.

    Args:
        num_classes: number of object classes (ids ``0..num_classes-1``, no background).
        image_size: an int or ``(height, width)``, multiples of 32.
        backbone_size: ``"xs"``, ``"s"``, ``"m"``, ``"l"`` or ``"xl"`` (ignored when
            ``weights`` is a KerasCV preset or a zoo model, which fix the backbone).
        weights: ``None`` (random), a path to a ``.weights.h5`` file saved from a detector
            with the same arguments, a KerasCV backbone preset name such as
            ``"yolo_v8_s_backbone_coco"`` (needs internet: Kaggle), or ``"zoo:NAME"``, a
            YOLOv8 of :mod:`kdet.zoo` (its local copy, else a download) whose backbone and
            neck start the model, its head too when the class count matches.
        bounding_box_format: the KerasCV box format of training labels and predictions.
        fpn_depth: depth of the CSP blocks in the path-aggregation FPN.
        max_anchor_matches, label_encoder_alpha, label_encoder_beta: the task-aligned
            assigner's top-k and the exponents of score and IoU in its alignment metric.
        confidence_threshold, iou_threshold, max_detections: the prediction decoder (NMS).
        objects_per_image_prior: expected objects per image that sets the initial class
            bias ``log(prior / num_classes / anchors_per_level)``; ``None`` keeps
            KerasCV's zero biases (the stock model).

    Returns:
        A ``keras_cv.models.YOLOV8Detector`` (not compiled; see ``kdet.models.yolov8.recipe``).
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1. Received: {num_classes=}")
    size = image_size_pair(image_size)
    preset = isinstance(weights, str) and weights in keras_cv.models.YOLOV8Backbone.presets
    source = _zoo_model(weights) if str(weights).startswith(zoo.PREFIX) else None
    if source is not None:
        backbone_size = _backbone_size(source)
    local_file = weights is not None and not preset and source is None
    if local_file and not os.path.isfile(weights):
        raise ValueError(
            "weights must be None, a KerasCV YOLOv8 backbone preset "
            f"{sorted(keras_cv.models.YOLOV8Backbone.presets)} or an existing .weights.h5 "
            f"file. Received: {weights=}"
        )
    if preset:
        backbone = _backbone_from_preset(weights, size)
    else:
        backbone = build_yolov8_backbone(backbone_size, size)
    model = keras_cv.models.YOLOV8Detector(
        backbone=backbone,
        num_classes=num_classes,
        bounding_box_format=bounding_box_format,
        fpn_depth=fpn_depth,
        label_encoder=keras_cv.models.yolov8.LabelEncoder(
            num_classes=num_classes,
            max_anchor_matches=max_anchor_matches,
            alpha=label_encoder_alpha,
            beta=label_encoder_beta,
        ),
        prediction_decoder=make_decoder(
            bounding_box_format,
            confidence_threshold=confidence_threshold,
            iou_threshold=iou_threshold,
            max_detections=max_detections,
        ),
    )
    if local_file:
        model.load_weights(weights)
    elif objects_per_image_prior is not None:
        initialise_head_biases(model, size, objects_per_image_prior)
    if source is not None:
        initialise_from(model, source, include_head=source.num_classes == num_classes)
    return model


def _zoo_model(name: str) -> keras_cv.models.YOLOV8Detector:
    entry, _ = zoo.resolve(name)
    if entry.family != "yolov8":
        raise ValueError(f"weights={name!r} is a {entry.family} model, not a YOLOv8")
    return zoo.load(name)


def _backbone_size(model) -> str:
    """The :data:`BACKBONE_SIZES` name of a ``YOLOV8Detector``'s backbone."""
    config = model.backbone.get_config()
    shape = (list(config["stackwise_channels"]), list(config["stackwise_depth"]))
    for name, (channels, depth) in BACKBONE_SIZES.items():
        if (channels, depth) == shape:
            return name
    raise KdetError(model.name, f"a YOLOv8 backbone of no known size ({shape})")


def initialise_head_biases(model, image_size, objects_per_image_prior: float = 5.0) -> None:
    """Set the head's class biases to an object prior and its box biases to 1.

    As Ultralytics' ``Detect.bias_init``: at each stride ``s`` the class bias is
    ``log(prior / num_classes / (H*W / s**2))``, so each anchor starts with a score near
    ``prior / num_classes / anchors`` instead of 0.5.
    """
    height, width = image_size_pair(image_size)
    for level, stride in zip(HEAD_LEVELS, STRIDES, strict=True):
        anchors = (height / stride) * (width / stride)
        prior = objects_per_image_prior / model.num_classes / anchors
        class_conv = model.get_layer(f"yolo_v8_head_{level}_class_3_conv")
        class_conv.bias.assign(np.full(class_conv.bias.shape, math.log(prior), "float32"))
        box_conv = model.get_layer(f"yolo_v8_head_{level}_box_3_conv")
        box_conv.bias.assign(np.ones(box_conv.bias.shape, "float32"))


def _backbone_from_preset(preset: str, size: tuple[int, int]) -> keras.Model:
    """A KerasCV preset backbone (downloads from Kaggle), with a clear error offline."""
    try:
        return keras_cv.models.YOLOV8Backbone.from_preset(preset, input_shape=(*size, 3))
    except Exception as error:  # KerasCV/kagglehub raise many types when offline
        raise DownloadError(
            f"kaggle preset {preset}",
            f"could not load the KerasCV preset ({type(error).__name__}: {error}). Offline, "
            "use weights=None (random) or a local .weights.h5 file.",
        ) from error


def initialise_from(
    model, source, *, include_neck: bool = True, include_head: bool = False
) -> list[str]:
    """Copy a trained YOLOv8's backbone (and neck) weights into ``model``; the head stays new.

    For fine-tuning on another dataset: the head's last class convolution depends on the
    number of classes, so the whole head keeps its fresh initialisation (with the object
    prior) unless ``include_head``; the backbone must be the same size, the neck and head
    are copied layer by layer where names and shapes match (same backbone size and
    ``fpn_depth``).

    Args:
        model: the new ``YOLOV8Detector`` (any number of classes and input size).
        source: a ``.keras`` file saved from a trained ``YOLOV8Detector``, or one loaded.
        include_neck: also copy the path-aggregation FPN (``pa_fpn_*`` layers).
        include_head: also copy the head (``yolo_v8_head_*`` layers): same classes.

    Returns:
        The names of the layers whose weights were copied.

    Raises:
        KdetError: ``source`` is missing, not a YOLOv8 detector, or its backbone differs.

    Example:
        >>> raccoon = "data/models/yolov8_raccoon/model.keras"
        >>> copied = initialise_from(model, raccoon)  # doctest: +SKIP
    """
    if isinstance(source, keras_cv.models.YOLOV8Detector):
        loaded, source = source, source.name
    elif not os.path.isfile(source):
        raise KdetError(source, "no such file: init_from must be a trained YOLOv8 .keras file")
    else:
        loaded = keras.saving.load_model(source, compile=False)
    if not isinstance(loaded, keras_cv.models.YOLOV8Detector):
        raise KdetError(source, f"is a {type(loaded).__name__}, not a YOLOV8Detector")
    mismatched = _weight_shapes(loaded.backbone) != _weight_shapes(model.backbone)
    if mismatched:
        raise KdetError(
            source,
            "its backbone has other layers or weight shapes than the new model's "
            "(build the new model with the same backbone_size)",
        )
    model.backbone.set_weights(loaded.backbone.get_weights())
    copied = [layer.name for layer in model.backbone.layers if layer.weights]
    prefixes = ("pa_fpn",) * include_neck + ("yolo_v8_head",) * include_head
    for layer in model.layers:
        if not layer.name.startswith(prefixes) or not layer.weights:
            continue
        try:
            old = loaded.get_layer(layer.name)
        except ValueError:
            continue
        if _weight_shapes(old) == _weight_shapes(layer):
            layer.set_weights(old.get_weights())
            copied.append(layer.name)
    return copied


def _weight_shapes(layer) -> list[tuple]:
    return [tuple(weight.shape) for weight in layer.weights]
