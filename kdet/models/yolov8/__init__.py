"""YOLOv8 (KerasCV ``YOLOV8Detector``): builder, training recipe, evaluation, export.

Modules, one per role: ``builder`` (the registered ``yolov8`` model, offline backbones),
``inputs`` (tf.data with KerasCV box-aware augmentation), ``recipe`` (kdet's and the
keras.io example's training recipes), ``train``, ``decode`` (KerasCV decoding with a chosen
NMS), ``evaluate`` (kdet's COCO-style evaluator), ``export`` (SavedModel with
kdet's serving contract) and ``compare`` (recipes side by side).

Profiles (``params.yaml: train_yolov8``):

* default, for a 2-core CPU: ``backbone_size: xs``, 128² (shapes) / 256² (raccoon),
  float32 (``precision: auto`` picks bf16 only on AMX CPUs), no XLA.
* GPU (documented, not measured in this project): ``backbone_size: s`` or ``m``,
  ``image_size: 640``, ``batch_size: 32``, ``epochs: 100``, ``precision: auto`` (becomes
  ``mixed_float16`` when TensorFlow sees a GPU), ``jit_compile: true``. Nothing else
  changes: Keras places the model on the GPU by itself.
* several GPUs or machines: ``strategy: auto`` (the default) trains on every GPU it sees
  (``MirroredStrategy``) or across a ``TF_CONFIG`` cluster; ``batch_size`` is per GPU.

Example:
    >>> from kdet.models import get_model
    >>> model = get_model("yolov8", num_classes=1, image_size=256, backbone_size="xs")
"""

from kdet.models.yolov8.builder import BACKBONE_SIZES, build_yolov8, build_yolov8_backbone

__all__ = ["BACKBONE_SIZES", "build_yolov8", "build_yolov8_backbone"]
