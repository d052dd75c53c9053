import keras
import numpy as np
import pytest

from kdet.models.yolov8 import build_yolov8
from kdet.models.yolov8.recipe import compile_yolov8, get_recipe, learning_rate_schedule


def test_warmup_then_cosine():
    schedule = learning_rate_schedule(
        1e-2, 100, warmup_fraction=0.1, final_learning_rate_fraction=0.05
    )
    values = [float(schedule(step)) for step in (0, 5, 10, 55, 100)]
    assert values[0] < 1e-4
    assert values[1] == pytest.approx(0.5e-2, rel=0.02)
    assert values[2] == pytest.approx(1e-2)
    assert values[2] > values[3] > values[4]
    assert values[4] == pytest.approx(5e-4, rel=1e-3)


def test_keras_io_recipe_keeps_a_constant_rate():
    settings = get_recipe("keras_io")["compile"]
    assert (
        learning_rate_schedule(
            settings["learning_rate"],
            10,
            settings["warmup_fraction"],
            settings["final_learning_rate_fraction"],
        )
        == 1e-3
    )


def test_compile_sets_clipping_ema_and_losses():
    model = build_yolov8(num_classes=2, image_size=64)
    compile_yolov8(model, total_steps=10, **get_recipe("kdet")["compile"])
    assert isinstance(model.optimizer, keras.optimizers.AdamW)
    assert model.optimizer.global_clipnorm == 10.0
    assert model.optimizer.use_ema
    assert model.box_loss_weight == 7.5


def test_get_recipe_returns_a_copy_and_rejects_unknown_names():
    get_recipe("kdet")["compile"]["learning_rate"] = np.nan
    assert get_recipe("kdet")["compile"]["learning_rate"] == 2e-3
    with pytest.raises(ValueError, match="Unknown recipe"):
        get_recipe("ultralytics")
    with pytest.raises(ValueError, match="optimizer"):
        compile_yolov8(build_yolov8(num_classes=1, image_size=64), total_steps=1, optimizer="lion")


def test_keras_io_recipe_is_the_example():
    recipe = get_recipe("keras_io")
    assert recipe["inputs"] == {
        "flip": True,
        "scale_range": (0.75, 1.3),
        "shear": 0.2,
        "shuffle_buffer_batches": 4,
    }
    model = build_yolov8(num_classes=2, image_size=64, **recipe["model"])
    decoder = model.prediction_decoder  # KerasCV's default NonMaxSuppression settings
    assert (decoder.confidence_threshold, decoder.iou_threshold) == (0.2, 0.7)
    compile_yolov8(model, total_steps=10, **recipe["compile"])
    assert type(model.optimizer) is keras.optimizers.Adam
    assert model.optimizer.global_clipnorm == 10.0 and not model.optimizer.use_ema
    assert model.fpn_depth == 1
