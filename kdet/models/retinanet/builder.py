"""The registered ``retinanet`` builder: KerasHub's ``RetinaNetObjectDetector``.

Three sources of weights, as every kdet builder (``weights=``):

* ``None``: a small ResNet (KerasHub ``ResNetBackbone``, basic blocks) + FPN, randomly
  initialised, that trains from scratch on a CPU;
* a local KerasHub preset folder (what ``model.save_to_preset(folder)`` or
  ``keras_hub.models.RetinaNetBackbone.from_preset(...).save_to_preset(folder)`` writes):
  the whole detector when the folder holds one with ``num_classes`` classes, else its
  backbone with a new head;
* a preset name (``retinanet_resnet50_fpn_coco``...): the backbone downloads from Kaggle
  through KerasHub's cache; offline this raises :class:`kdet.errors.DownloadError` naming
  the preset and the two other choices;
* ``"zoo:NAME"``, a RetinaNet of :mod:`kdet.zoo` (its local copy, else a download): its
  backbone and box head, its class head too when the class count matches, and its image
  scaling (``kdet train retinanet --init zoo:NAME``).

Images go in as float32 ``0..255`` pixels; the model's preprocessor (KerasHub
``RetinaNetImageConverter``, scale ``1/255``) travels with it, in ``.keras`` files and
presets alike. Boxes are ``bounding_box_format`` (``xyxy`` pixels by default).

Example:
    >>> from kdet.models import get_model  # doctest: +SKIP
    >>> model = build_retinanet(num_classes=3, image_size=128)
    >>> model.bounding_box_format
    'xyxy'
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import keras_hub

from kdet import zoo
from kdet.errors import DownloadError
from kdet.models.registry import register_model

#: Small ResNet image encoders that train from scratch on a CPU (``weights=None``).
BACKBONES = {
    "resnet_tiny": {"filters": (64, 64, 96, 128), "blocks": (1, 1, 1, 1), "stem": 64},
    "resnet_small": {"filters": (64, 128, 256, 512), "blocks": (2, 2, 2, 2), "stem": 64},
}
PRESET_SOURCE = "https://www.kaggle.com/models/keras/retinanet (KerasHub presets)"


def image_size_pair(image_size) -> tuple[int, int]:
    """``int`` or ``(height, width)`` -> ``(height, width)``, multiples of 32."""
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if len(size) != 2 or any(int(s) % 32 or int(s) <= 0 for s in size):
        raise ValueError(f"image_size must be positive multiples of 32. Received: {image_size=}")
    return int(size[0]), int(size[1])


def build_image_encoder(backbone: str = "resnet_tiny", image_size=128):
    """A randomly initialised KerasHub ``ResNetBackbone`` (pyramid outputs P2-P5)."""
    if backbone not in BACKBONES:
        raise ValueError(f"backbone must be one of {sorted(BACKBONES)}. Received: {backbone=}")
    spec = BACKBONES[backbone]
    return keras_hub.models.ResNetBackbone(
        input_conv_filters=[spec["stem"]],
        input_conv_kernel_sizes=[7],
        stackwise_num_filters=list(spec["filters"]),
        stackwise_num_blocks=list(spec["blocks"]),
        stackwise_num_strides=[1, 2, 2, 2],
        block_type="basic_block",
        image_shape=(*image_size_pair(image_size), 3),
    )


def _preprocessor(bounding_box_format, scale=1.0 / 255.0, offset=None):
    converter = keras_hub.layers.RetinaNetImageConverter(
        scale=scale, offset=offset, bounding_box_format=bounding_box_format
    )
    return keras_hub.models.RetinaNetObjectDetectorPreprocessor(image_converter=converter)


def _local_task(path: Path, num_classes: int):
    """The detector saved in a local preset folder, if it has ``num_classes`` classes."""
    task_file = path / "task.json"
    if not task_file.exists():
        return None
    config = json.loads(task_file.read_text()).get("config", {})
    if config.get("num_classes") != num_classes:
        return None
    return keras_hub.models.RetinaNetObjectDetector.from_preset(str(path))


def _preset_backbone(weights: str):
    try:
        return keras_hub.models.RetinaNetBackbone.from_preset(weights)
    except Exception as error:  # kagglehub / requests raise many types when offline
        raise DownloadError(
            f"KerasHub preset {weights!r} from {PRESET_SOURCE}",
            f"could not load it ({type(error).__name__}: {error}). Offline, use "
            "weights=None (random init) or a local preset folder: on a machine with "
            f"internet run keras_hub.models.RetinaNetBackbone.from_preset({weights!r})"
            ".save_to_preset('FOLDER'), copy FOLDER here and pass weights='FOLDER'.",
        ) from error


def _from_zoo(name: str, *, num_classes: int, size, bounding_box_format: str, decoder):
    """A detector for ``size`` images on a zoo RetinaNet's weights (see the module doc)."""
    entry, _ = zoo.resolve(name)
    if entry.family != "retinanet":
        raise ValueError(f"weights={name!r} is a {entry.family} model, not a RetinaNet")
    source = zoo.load(name)
    config = source.backbone.get_config()
    encoder = keras_hub.models.ResNetBackbone.from_config(
        {**config["image_encoder"]["config"], "image_shape": (*size, 3)}
    )
    backbone = keras_hub.models.RetinaNetBackbone(
        image_encoder=encoder,
        min_level=config["min_level"],
        max_level=config["max_level"],
        use_p5=config["use_p5"],
        use_fpn_batch_norm=config["use_fpn_batch_norm"],
        image_shape=(*size, 3),
    )
    backbone.set_weights(source.backbone.get_weights())
    converter = source.preprocessor.image_converter
    model = keras_hub.models.RetinaNetObjectDetector(
        backbone=backbone,
        num_classes=num_classes,
        bounding_box_format=bounding_box_format,
        use_prediction_head_norm=source.use_prediction_head_norm,
        pre_logits_num_conv_layers=source.pre_logits_num_conv_layers,
        preprocessor=_preprocessor(bounding_box_format, converter.scale, converter.offset),
        prediction_decoder=decoder,
    )
    model.box_head.set_weights(source.box_head.get_weights())
    if num_classes == source.num_classes:
        model.classification_head.set_weights(source.classification_head.get_weights())
    return model


@register_model("retinanet")
def build_retinanet(
    *,
    num_classes: int,
    image_size=128,
    weights: str | os.PathLike | None = None,
    backbone: str = "resnet_tiny",
    bounding_box_format: str = "xyxy",
    min_level: int = 3,
    max_level: int = 5,
    head_conv_layers: int = 2,
    confidence_threshold: float = 0.5,
    iou_threshold: float = 0.5,
    max_detections: int = 100,
):
    """Build a KerasHub ``RetinaNetObjectDetector`` for kdet's batches.

    Reference: Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017
    (https://arxiv.org/abs/1708.02002); KerasHub's ``RetinaNetObjectDetector``.

    Args:
        num_classes: number of object classes (ids ``0..num_classes-1``).
        image_size: int or ``(height, width)``, multiples of 32.
        weights: ``None`` (random), a local KerasHub preset folder, a KerasHub preset
            name (needs internet: :class:`kdet.errors.DownloadError` otherwise) or
            ``"zoo:NAME"`` (:mod:`kdet.zoo`; ``head_conv_layers`` is the zoo model's).
        backbone: with ``weights=None``: one of :data:`BACKBONES`.
        bounding_box_format: format of the boxes the model trains on and predicts.
        min_level, max_level: feature pyramid levels (3-5 suits 64-256 px images).
        head_conv_layers: 3x3 convolutions (256 filters) in each head before its output.
        confidence_threshold, iou_threshold, max_detections: the model's NMS decoder
            (``predict``); evaluation and export pass their own.

    Returns:
        A compiled ``keras_hub.models.RetinaNetObjectDetector`` (KerasHub's default
        compile: Adam, focal loss for classes, smooth L1 for boxes).

    Raises:
        ValueError: a bad ``image_size``/``backbone``/``weights``.
        DownloadError: a preset name that cannot be downloaded.
    """
    size = image_size_pair(image_size)
    decoder = keras_hub.layers.NonMaxSuppression(
        bounding_box_format=bounding_box_format,
        from_logits=True,
        confidence_threshold=confidence_threshold,
        iou_threshold=iou_threshold,
        max_detections=max_detections,
    )
    if isinstance(weights, str) and weights.startswith(zoo.PREFIX):
        return _from_zoo(
            weights,
            num_classes=num_classes,
            size=size,
            bounding_box_format=bounding_box_format,
            decoder=decoder,
        )
    if weights is None:
        encoder = build_image_encoder(backbone, size)
        retina_backbone = keras_hub.models.RetinaNetBackbone(
            image_encoder=encoder,
            min_level=min_level,
            max_level=max_level,
            use_p5=False,
            image_shape=(*size, 3),
        )
    elif Path(weights).is_dir():
        task = _local_task(Path(weights), num_classes)
        if task is not None:
            return task
        retina_backbone = keras_hub.models.RetinaNetBackbone.from_preset(str(weights))
    elif isinstance(weights, str) and "/" not in weights and os.sep not in weights:
        retina_backbone = _preset_backbone(weights)
    else:
        raise ValueError(
            "weights must be None, a local KerasHub preset folder, a KerasHub preset name "
            f"(e.g. {sorted(keras_hub.models.RetinaNetBackbone.presets)}) or zoo:NAME. "
            f"Received: weights={weights!r}"
        )
    return keras_hub.models.RetinaNetObjectDetector(
        backbone=retina_backbone,
        num_classes=num_classes,
        bounding_box_format=bounding_box_format,
        pre_logits_num_conv_layers=head_conv_layers,
        preprocessor=_preprocessor(bounding_box_format),
        prediction_decoder=decoder,
    )
