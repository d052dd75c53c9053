"""Detection models, built by name.

Importing this package registers every model family.

Example:
    >>> from kdet.models import list_models
    >>> isinstance(list_models(), list)
    True
"""

from kdet.models.backbones import build_backbone
from kdet.models.registry import get_model, list_models, register_model
from kdet.models.yolov8 import build_yolov8

__all__ = ["build_backbone", "build_yolov8", "get_model", "list_models", "register_model"]
