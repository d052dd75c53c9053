import keras
import numpy as np
import pytest

from kdet.models import build_backbone


@pytest.mark.parametrize(
    "name,input_shape,out_channels",
    [
        ("small_cnn", (64, 64, 3), 128),
        ("vgg16", (64, 64, 3), 512),
        ("mobilenet_v2", (64, 64, 3), 1280),
    ],
)
def test_backbone_shapes(name, input_shape, out_channels):
    backbone = build_backbone(name, input_shape=input_shape, weights=None)
    features = backbone(np.zeros((1, *input_shape), "float32"))
    assert features.shape[-1] == out_channels


def test_vgg16_keeps_keras_layer_names():
    backbone = build_backbone("vgg16", input_shape=(32, 32, 3), weights=None)
    assert backbone.get_layer("block5_conv3") is not None


@pytest.mark.parametrize("name,blocks", [("vgg16", 5), ("mobilenet_v2", 16), ("small_cnn", 4)])
def test_trainable_blocks(name, blocks):
    frozen = build_backbone(name, input_shape=(64, 64, 3), trainable_blocks=0)
    assert not frozen.trainable_weights
    last = build_backbone(name, input_shape=(64, 64, 3), trainable_blocks=1)
    full = build_backbone(name, input_shape=(64, 64, 3), trainable_blocks="all")
    assert 0 < len(last.trainable_weights) < len(full.trainable_weights)
    first_conv = next(layer for layer in last.layers if layer.weights)
    assert not first_conv.trainable


def test_local_weights_file_round_trip(tmp_path):
    source = build_backbone("small_cnn", input_shape=(64, 64, 3))
    path = tmp_path / "backbone.weights.h5"
    source.save_weights(path)
    loaded = build_backbone("small_cnn", input_shape=(64, 64, 3), weights=str(path))
    for a, b in zip(source.weights, loaded.weights, strict=True):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))


def test_bad_weights_arguments_are_clear(tmp_path):
    with pytest.raises(ValueError, match="Weights file not found"):
        build_backbone("vgg16", weights=str(tmp_path / "missing.weights.h5"))
    with pytest.raises(ValueError, match="Received: weights=3"):
        build_backbone("vgg16", weights=3)
    with pytest.raises(ValueError, match="Unknown backbone"):
        build_backbone("resnet", weights=None)


def test_offline_imagenet_names_the_alternatives(monkeypatch):
    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: None")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    monkeypatch.setattr("keras.src.applications.vgg16.file_utils.get_file", offline)
    with pytest.raises(RuntimeError, match="weights=None.*weights='/path/file.weights.h5'"):
        build_backbone("vgg16", input_shape=(32, 32, 3), weights="imagenet")
