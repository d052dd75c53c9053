"""Fine-tuning start: backbone and neck weights copied from a model with other classes."""

import keras
import numpy as np
import pytest

from kdet.errors import KdetError
from kdet.models.yolov8 import build_yolov8
from kdet.models.yolov8.builder import initialise_from


@pytest.fixture(scope="module")
def source_file(tmp_path_factory):
    keras.utils.set_random_seed(1)
    source = build_yolov8(num_classes=1, image_size=64)
    path = tmp_path_factory.mktemp("source") / "model.keras"
    source.save(path)
    return source, path


def test_backbone_and_neck_copied_head_kept(source_file):
    source, path = source_file
    keras.utils.set_random_seed(2)
    model = build_yolov8(num_classes=3, image_size=96)
    head_before = model.get_layer("yolo_v8_head_1_class_1_conv").get_weights()
    copied = initialise_from(model, path)
    for got, want in zip(model.backbone.get_weights(), source.backbone.get_weights(), strict=True):
        np.testing.assert_array_equal(got, want)
    neck = "pa_fpn_p3p4p5_downsample2_block_output_conv"
    assert neck in copied
    np.testing.assert_array_equal(
        model.get_layer(neck).get_weights()[0], source.get_layer(neck).get_weights()[0]
    )
    assert not any(name.startswith("yolo_v8_head") for name in copied)
    np.testing.assert_array_equal(
        model.get_layer("yolo_v8_head_1_class_1_conv").get_weights()[0], head_before[0]
    )
    assert model(np.zeros((1, 96, 96, 3), "float32"))["classes"].shape[-1] == 3


def test_without_neck_copies_only_the_backbone(source_file):
    _, path = source_file
    model = build_yolov8(num_classes=2, image_size=64)
    copied = initialise_from(model, path, include_neck=False)
    assert copied and not any(name.startswith("pa_fpn") for name in copied)


def test_other_backbone_size_is_a_clear_error(source_file):
    _, path = source_file
    model = build_yolov8(num_classes=2, image_size=64, backbone_size="s")
    with pytest.raises(KdetError, match="backbone_size"):
        initialise_from(model, path)


def test_missing_file_names_it(tmp_path):
    model = build_yolov8(num_classes=2, image_size=64)
    with pytest.raises(KdetError, match="nothing.keras"):
        initialise_from(model, tmp_path / "nothing.keras")
