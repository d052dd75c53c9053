import keras
import numpy as np
import pytest

from kdet.models import get_model, list_models
from kdet.models.single_box import ImageNormalization, split_at_backbone
from kdet.models.single_box.builder import box_loss_function
from kdet.training import configure_precision

SINGLE_BOX_MODELS = {
    "bbox_regressor": {},
    "multiclass_detector": {"num_classes": 3},
}


def small(name, **kwargs):
    options = {"backbone": "small_cnn", "image_size": (64, 64), **SINGLE_BOX_MODELS[name]}
    return get_model(name, **{**options, **kwargs})


def test_both_models_are_registered():
    assert set(SINGLE_BOX_MODELS) <= set(list_models())


@pytest.mark.parametrize("name", sorted(SINGLE_BOX_MODELS))
@pytest.mark.parametrize("box_loss", ["mse", "huber", "giou"])
def test_keras_round_trip_keeps_predictions(name, box_loss, tmp_path):
    model = small(name, box_loss=box_loss)
    images = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    before = model.predict(images, verbose=0)
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    after = loaded.predict(images, verbose=0)
    assert loaded.get_compile_config() == model.get_compile_config()
    assert sorted(after) == sorted(before)
    for key in before:
        np.testing.assert_allclose(after[key], before[key], rtol=1e-5, atol=1e-6)


def test_giou_loss_on_relative_boxes_equals_giou_in_pixels():
    rng = np.random.default_rng(0)
    corners = np.sort(rng.uniform(0, 1, (2, 8, 2, 2)), axis=-1)  # (truth|pred, box, x|y, 1|2)
    true, pred = corners.transpose(0, 1, 3, 2).reshape(2, 8, 4).astype("float32")
    width, height = 640.0, 120.0
    scale = np.array([width, height, width, height], "float32")
    loss = box_loss_function("giou")
    relative = float(loss(true, pred))
    pixels = float(loss(true * scale, pred * scale))
    np.testing.assert_allclose(relative, pixels, rtol=1e-5)
    # 1 - GIoU of identical boxes is 0, of disjoint boxes more than 1.
    assert float(loss(true, true)) == pytest.approx(0.0, abs=1e-4)
    assert float(loss([[0, 0, 0.2, 0.2]], [[0.5, 0.5, 0.9, 0.9]])) > 1.0


@pytest.mark.parametrize("name", sorted(SINGLE_BOX_MODELS))
def test_stable_layer_names_and_output_ranges(name):
    model = small(name)
    assert model.get_layer("bounding_box").units == 4
    assert model.get_layer("small_cnn").get_layer("block4_conv2") is not None
    outputs = model.predict(np.zeros((1, 64, 64, 3), "float32"), verbose=0)
    assert outputs["bounding_box"].shape == (1, 4)
    assert np.all((outputs["bounding_box"] >= 0) & (outputs["bounding_box"] <= 1))
    if name == "multiclass_detector":
        assert model.get_layer("class_label").units == 3
        np.testing.assert_allclose(outputs["class_label"].sum(), 1.0, rtol=1e-5)


@pytest.mark.parametrize("name", sorted(SINGLE_BOX_MODELS))
def test_outputs_stay_float32_under_mixed_precision(name):
    previous = keras.mixed_precision.global_policy()
    try:
        configure_precision("mixed_bfloat16")
        model = small(name)
        assert model.get_layer("box_dense_1").compute_dtype == "bfloat16"
        outputs = model(np.zeros((1, 64, 64, 3), "float32"))
        assert all(keras.backend.standardize_dtype(v.dtype) == "float32" for v in outputs.values())
    finally:
        keras.mixed_precision.set_global_policy(previous)


def test_head_options_and_loss_weights():
    model = small(
        "multiclass_detector",
        box_units=(16,),
        class_units=(8, 8, 8),
        loss_weights={"class_label": 2.0},
    )
    assert [layer.name for layer in model.layers if layer.name.startswith("box_dense")] == [
        "box_dense_1"
    ]
    assert model.get_layer("class_dense_3").units == 8
    assert model.get_compile_config()["loss_weights"] == {"bounding_box": 1.0, "class_label": 2.0}


def test_frozen_backbone_and_split_share_weights():
    model = small("bbox_regressor", trainable_blocks=0)
    assert not model.get_layer("small_cnn").trainable_weights
    extractor, head = split_at_backbone(model)
    features = extractor.predict(np.ones((1, 64, 64, 3), "float32"), verbose=0)
    assert features.shape == (1, 4, 4, 128)
    np.testing.assert_allclose(
        head.predict(features, verbose=0)["bounding_box"],
        model.predict(np.ones((1, 64, 64, 3), "float32"), verbose=0)["bounding_box"],
        rtol=1e-5,
    )
    assert head.get_layer("bounding_box") is model.get_layer("bounding_box")


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"image_size": (16, 16)}, "image_size"),
        ({"box_loss": "iou"}, "box_loss"),
        ({"num_classes": 1}, "num_classes"),
        ({"loss_weights": {"boxes": 1.0}}, "loss_weights"),
        ({"backbone": "resnet"}, "Unknown backbone"),
    ],
)
def test_bad_arguments_are_clear(kwargs, message):
    with pytest.raises(ValueError, match=message):
        small("multiclass_detector", **kwargs)


def test_image_normalization_modes():
    white = np.full((1, 1, 1, 3), 255.0, "float32")
    assert float(ImageNormalization("unit")(white)[0, 0, 0, 0]) == 1.0
    assert float(ImageNormalization("mobilenet_v2")(white)[0, 0, 0, 0]) == 1.0
    rgb = np.array([[[[10.0, 20.0, 30.0]]]], "float32")
    np.testing.assert_allclose(
        ImageNormalization("vgg16")(rgb)[0, 0, 0],
        keras.applications.vgg16.preprocess_input(rgb.copy())[0, 0, 0],
        rtol=1e-5,
    )
    with pytest.raises(ValueError, match="mode must be one of"):
        ImageNormalization("caffe")


def test_start_at_box_makes_the_head_predict_that_box():
    from kdet.models.single_box.builder import start_at_box

    model = small("bbox_regressor")
    start_at_box(model, [0.1, 0.2, 0.7, 0.9], seed=0)
    images = np.random.default_rng(1).uniform(0, 255, (3, 64, 64, 3)).astype("float32")
    boxes = model.predict(images, verbose=0)["bounding_box"]
    np.testing.assert_allclose(boxes, np.tile([0.1, 0.2, 0.7, 0.9], (3, 1)), atol=0.03)
