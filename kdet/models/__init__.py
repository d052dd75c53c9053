"""Detection models, built by name.

Importing this package registers every model family.

Example:
    >>> from kdet.models import list_models
    >>> isinstance(list_models(), list)
    True
"""

# The model families register their builders when imported.
from kdet.models import rcnn
from kdet.models.backbones import build_backbone
from kdet.models.registry import get_model, list_models, register_model
from kdet.models.single_box import build_bbox_regressor, build_multiclass_detector
from kdet.models.sliding_window import SlidingWindowDetector
from kdet.models.yolov8 import build_yolov8

__all__ = [
    "SlidingWindowDetector",
    "build_backbone",
    "build_bbox_regressor",
    "build_multiclass_detector",
    "build_yolov8",
    "get_model",
    "list_models",
    "rcnn",
    "register_model",
]
