"""R-CNN on selective-search proposals, and its shared-feature (Fast R-CNN) mode.

One module per role: ``proposals`` (selective search, recall), ``labelling`` (which
proposals train as what), ``classifier`` (the registered ``rcnn_classifier``),
``detector`` (crops of an image classified in one batch, NMS), ``fast_rcnn`` (the
registered ``fast_rcnn``: RoIAlign on shared features + box regression) and ``train``.

Example:
    >>> from kdet.models import get_model
    >>> get_model("rcnn_classifier", backbone="small_cnn", input_size=64).output_shape
    (None, 2)
"""

from kdet.models.rcnn.classifier import build_rcnn_classifier
from kdet.models.rcnn.detector import RCNNDetector
from kdet.models.rcnn.fast_rcnn import FastRCNNDetector, build_fast_rcnn

__all__ = ["FastRCNNDetector", "RCNNDetector", "build_fast_rcnn", "build_rcnn_classifier"]
