"""RetinaNet (KerasHub ``RetinaNetObjectDetector``): builder, inputs, training, evaluation.

Modules, one per role: ``builder`` (the registered ``retinanet`` model: a small ResNet-FPN
from scratch, a local KerasHub preset folder or a preset name), ``inputs`` (tf.data pairs
in the Keras 3 core box convention), ``train`` (``kdet.training.fit``), ``evaluate``
(decoding, kdet's COCO-style evaluation, SavedModel export) and ``family`` (the runner's
protocol). Needs ``keras-hub`` (``pip install kdet[hub]``); keras-cv is not used.

Example:
    >>> from kdet.models.retinanet import build_retinanet
    >>> model = build_retinanet(num_classes=3, image_size=128)  # doctest: +SKIP
"""

from kdet.models.retinanet.builder import BACKBONES, build_retinanet

__all__ = ["BACKBONES", "build_retinanet"]
