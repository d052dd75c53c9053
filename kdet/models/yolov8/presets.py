"""KerasCV YOLOv8 detector presets for :mod:`kdet.zoo`: load, save and run one.

KerasCV 0.9 saves presets with ``keras_cv.src.utils.preset_utils.save_to_preset`` (its
only saver; the Kaggle presets were written with it) and reads them back, from a preset
name or a local folder, with ``YOLOV8Detector.from_preset``.

Example:
    >>> model = load_preset("yolo_v8_m_pascalvoc")  # doctest: +SKIP
    >>> save_preset(model, "zoo/yolo_v8_m_pascalvoc")  # doctest: +SKIP
"""

from __future__ import annotations

import keras_cv
from keras_cv.src.utils.preset_utils import save_to_preset

from kdet.models.yolov8.export import make_detect_fn

__all__ = ["load_preset", "make_detect_fn", "save_preset"]


def load_preset(preset: str) -> keras_cv.models.YOLOV8Detector:
    """A ``YOLOV8Detector`` from a KerasCV preset name or a local preset folder."""
    return keras_cv.models.YOLOV8Detector.from_preset(preset)


def save_preset(model, folder: str) -> None:
    """KerasCV's own preset saver: what :func:`load_preset` reads back."""
    save_to_preset(model, folder)
