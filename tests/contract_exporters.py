"""Tiny untrained models of every family exported through the family's own export code,
for tests/test_contract.py (``function(path) -> class names``; ``weights=None``, small
inputs, so each export takes seconds)."""

import keras

CLASS_NAMES = ["cat", "dog"]


def _rcnn_options():
    return {"score_threshold": 0.0, "iou_threshold": 0.99}


def export_rcnn(path) -> list[str]:
    from kdet.export import export_proposal_detector
    from kdet.models import get_model
    from kdet.models.rcnn.detector import RCNNDetector

    # the family's default (labelling: paper) classifier, with per-class box regression
    classifier = get_model(
        "rcnn_classifier", backbone="small_cnn", input_size=32, box_regression=True
    )
    detector = RCNNDetector(classifier, **_rcnn_options())
    export_proposal_detector(path, detector.detect_eager, ["raccoon"], classifier)
    return ["raccoon"]


def export_fast_rcnn(path) -> list[str]:
    from kdet.export import export_proposal_detector
    from kdet.models import get_model
    from kdet.models.rcnn.fast_rcnn import FastRCNNDetector

    model = get_model("fast_rcnn", backbone="small_cnn", image_size=64, pool_size=3)
    export_proposal_detector(
        path, FastRCNNDetector(model, **_rcnn_options()).detect_eager, ["raccoon"], model
    )
    return ["raccoon"]


def export_sliding_window(path) -> list[str]:
    from kdet.export import export_detector
    from kdet.models import get_model
    from kdet.models.sliding_window import SlidingWindowDetector

    classifier = get_model("rcnn_classifier", backbone="small_cnn", input_size=32)
    detector = SlidingWindowDetector(classifier, window_size=(32, 32), step=16, **_rcnn_options())
    export_detector(path, detector.detect_eager, ["raccoon"], classifier)
    return ["raccoon"]


def export_bbox_regressor(path) -> list[str]:
    from kdet.models import get_model
    from kdet.models.single_box.serving import export_single_box_model

    keras.utils.set_random_seed(0)
    model = get_model("bbox_regressor", backbone="small_cnn", image_size=(64, 64))
    export_single_box_model(model, path, ["airplanes"])
    return ["airplanes"]


def export_multiclass(path) -> list[str]:
    from kdet.models import get_model
    from kdet.models.single_box.serving import export_single_box_model

    keras.utils.set_random_seed(0)
    model = get_model(
        "multiclass_detector", num_classes=2, backbone="small_cnn", image_size=(64, 64)
    )
    export_single_box_model(model, path, CLASS_NAMES)
    return CLASS_NAMES


def export_yolov8(path) -> list[str]:
    from kdet.models import get_model
    from kdet.models.yolov8.export import export_yolov8 as export

    model = get_model("yolov8", num_classes=2, image_size=64, backbone_size="xs")
    export(model, path, CLASS_NAMES, confidence_threshold=0.0)
    return CLASS_NAMES
