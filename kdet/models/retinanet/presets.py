"""KerasHub RetinaNet presets for :mod:`kdet.zoo`: load, save and run one.

Example:
    >>> model = load_preset("retinanet_resnet50_fpn_coco")  # doctest: +SKIP
    >>> save_preset(model, "zoo/retinanet_resnet50_fpn_coco")  # doctest: +SKIP
"""

from __future__ import annotations

import keras_hub

from kdet.models.retinanet.evaluate import make_detect_fn

__all__ = ["load_preset", "make_detect_fn", "save_preset"]


def load_preset(preset: str):
    """A ``RetinaNetObjectDetector`` from a KerasHub preset name or a local preset folder."""
    return keras_hub.models.RetinaNetObjectDetector.from_preset(preset)


def save_preset(model, folder: str) -> None:
    """KerasHub's own ``save_to_preset``: what :func:`load_preset` reads back."""
    model.save_to_preset(folder)
