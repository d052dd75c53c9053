"""Detection models, built by name.

Importing this package registers every model family.

Example:
    >>> from kdet.models import list_models
    >>> isinstance(list_models(), list)
    True
"""

from kdet.models.backbones import build_backbone
from kdet.models.registry import get_model, list_models, register_model

__all__ = ["build_backbone", "get_model", "list_models", "register_model"]
