"""YOLOv8 (KerasCV ``YOLOV8Detector``): builder, training recipe, evaluation, export."""

from kdet.models.yolov8.builder import BACKBONE_SIZES, build_yolov8, build_yolov8_backbone

__all__ = ["BACKBONE_SIZES", "build_yolov8", "build_yolov8_backbone"]
