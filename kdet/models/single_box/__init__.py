"""Single-box models: the bbox regressor and the multi-class detector (one box per image).

Importing this package registers ``bbox_regressor`` and ``multiclass_detector``.

Example:
    >>> from kdet.models import get_model
    >>> model = get_model("bbox_regressor", backbone="small_cnn", image_size=(64, 64))
    >>> model.output_names
    ['bounding_box']
"""

from kdet.models.single_box.bbox_regressor import build_bbox_regressor
from kdet.models.single_box.builder import build_single_box_model, split_at_backbone
from kdet.models.single_box.feature_cache import FeatureCache
from kdet.models.single_box.layers import ImageNormalization
from kdet.models.single_box.multiclass import build_multiclass_detector
from kdet.models.single_box.train import TrainResult, train_single_box

__all__ = [
    "FeatureCache",
    "ImageNormalization",
    "TrainResult",
    "build_bbox_regressor",
    "build_multiclass_detector",
    "build_single_box_model",
    "split_at_backbone",
    "train_single_box",
]
