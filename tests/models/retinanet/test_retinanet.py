"""The KerasHub RetinaNet family: build, train step, save/load, presets, export."""

import subprocess
import sys

import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf

from kdet.errors import DownloadError
from kdet.families import get_family
from kdet.models.registry import get_model
from kdet.models.retinanet.builder import build_retinanet
from kdet.models.retinanet.evaluate import (
    detect_batch,
    evaluate_retinanet,
    export_retinanet,
    make_decoder,
)
from kdet.models.retinanet.inputs import boxes_to_original, fit_to_model
from kdet.models.retinanet.train import train_retinanet


def _batch(size=64, count=2):
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (count, size, size, 3)).astype("float32")
    boxes = np.full((count, 4, 4), -1, "float32")
    labels = np.full((count, 4), -1, "float32")
    boxes[:, 0], labels[:, 0] = [8, 8, 40, 40], 1
    boxes[:, 1], labels[:, 1] = [30, 10, 60, 30], 0
    return images, {"boxes": boxes, "labels": labels}


def test_registered_builder_and_family():
    model = get_model("retinanet", num_classes=2, image_size=64)
    assert isinstance(model, keras_hub.models.RetinaNetObjectDetector)
    assert model.input_shape == (None, 64, 64, 3) and model.bounding_box_format == "xyxy"
    family = get_family("retinanet")
    assert family.name == "retinanet" and set(family.defaults) == {"train", "evaluate"}


def test_one_train_step_on_64x64_and_keras_round_trip(tmp_path):
    model = build_retinanet(num_classes=2, image_size=64)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    images, targets = _batch()
    one_step = tf.data.Dataset.from_tensors((images, targets))
    loss = model.fit(one_step, epochs=1, verbose=0).history["loss"][0]
    assert np.isfinite(loss) and loss > 0
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert loaded.preprocessor is not None  # preprocessing travels with the model
    inputs = model.preprocessor(images)
    before, after = model(inputs), loaded(loaded.preprocessor(images))
    for key in before:
        np.testing.assert_allclose(after[key], before[key], rtol=1e-5, atol=1e-5)


def test_keras_hub_preset_round_trip_through_the_builder(tmp_path):
    model = build_retinanet(num_classes=2, image_size=64)
    model.save_to_preset(str(tmp_path / "preset"))
    images, _ = _batch()
    # Same classes: the whole detector comes back.
    same = build_retinanet(num_classes=2, image_size=64, weights=tmp_path / "preset")
    expected = model(model.preprocessor(images))
    for key, value in same(same.preprocessor(images)).items():
        np.testing.assert_allclose(value, expected[key], rtol=1e-5, atol=1e-5)
    # Other classes: the preset's backbone, a new head.
    other = build_retinanet(num_classes=3, image_size=64, weights=str(tmp_path / "preset"))
    assert other.num_classes == 3
    encoder, original = other.backbone.get_layer("backbone"), model.backbone.get_layer("backbone")
    for mine, theirs in zip(encoder.weights, original.weights, strict=True):
        np.testing.assert_array_equal(mine, theirs)


def test_an_unreachable_preset_name_says_where_and_what_else(monkeypatch):
    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(keras_hub.models.RetinaNetBackbone, "from_preset", offline)
    with pytest.raises(DownloadError, match="retinanet_resnet50_fpn_coco") as raised:
        build_retinanet(num_classes=2, weights="retinanet_resnet50_fpn_coco")
    assert "kaggle" in str(raised.value).lower() and "weights=None" in str(raised.value)
    assert "save_to_preset" in str(raised.value)
    with pytest.raises(ValueError, match="weights"):
        build_retinanet(num_classes=2, weights="/no/such/folder")


@pytest.fixture(scope="module")
def trained(tiny_records, tmp_path_factory):
    folder = tmp_path_factory.mktemp("retinanet")
    model, history = train_retinanet(
        tiny_records.split("train"),
        image_size=64,
        batch_size=4,
        epochs=1,
        history_csv=folder / "history.csv",
        checkpoint_dir=folder / "checkpoints",
        strategy="default",
        verbose=0,
    )
    return model, history, folder


@pytest.mark.slow
def test_training_writes_history_and_evaluation_is_in_original_pixels(trained, tiny_records):
    model, history, folder = trained
    assert np.isfinite(history["loss"]).all()
    assert "cls_logits_loss" in (folder / "history.csv").read_text()
    test = tiny_records.split("test")
    result, predictions = evaluate_retinanet(model, test, batch_size=2)
    assert len(predictions) == len(test)
    assert 0.0 <= result.as_metrics()["mAP50"] <= 1.0
    boxes = np.concatenate([p["boxes"] for p in predictions])
    if len(boxes):
        assert boxes[:, 2].max() <= 80 + 1e-3 and boxes[:, 3].max() <= 48 + 1e-3


@pytest.mark.slow
def test_export_serves_boxes_in_image_pixels_without_kdet(tiny_records, tmp_path):
    # A random model finds many (meaningless) boxes: enough to check the geometry. Its
    # box head is zeroed so that boxes are its anchors (no degenerate boxes, no NMS ties).
    model = build_retinanet(num_classes=2, image_size=64)
    for weight in model.box_head.weights:
        weight.assign(np.zeros(weight.shape, weight.dtype))
    path = export_retinanet(
        model, tmp_path / "saved_model", tiny_records.class_names, confidence_threshold=0.0
    )
    image = tf.cast(tf.random.uniform((48, 80, 3), 0, 255, seed=1), tf.uint8)
    out = tf.saved_model.load(path).signatures["detect_image"](image=image)
    boxes = out["boxes"].numpy()
    assert int(out["num_detections"]) == len(boxes) > 0
    assert (boxes >= 0).all() and boxes[:, 2].max() <= 80 and boxes[:, 3].max() <= 48
    # The same detections as in eager mode, mapped from the 64x64 input to 80x48 pixels.
    fitted = fit_to_model(image, (64, 64))[tf.newaxis]
    decoded = detect_batch(model, fitted, make_decoder(model, confidence_threshold=0.0))
    count = int(decoded["num_detections"][0])
    expected = boxes_to_original(decoded["boxes"][0, :count], 48, 80, (64, 64)).numpy()
    # Anchors overlapping at exactly the IoU threshold may tip either way in graph vs eager
    # NMS (the counts differ by a few): compare the top detections.
    assert len(boxes) > 20 and count > 20
    np.testing.assert_allclose(boxes[:5], expected[:5], rtol=1e-4, atol=1e-3)
    assert set(out["class_names"].numpy().astype(str)) <= set(tiny_records.class_names)
    code = (
        "import sys, tensorflow as tf\n"
        f"m = tf.saved_model.load({str(path)!r})\n"
        "out = m.signatures['detect_image'](image=tf.zeros((30, 50, 3), tf.uint8))\n"
        "assert 'kdet' not in sys.modules and 'keras_hub' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=300)


@pytest.mark.slow
def test_trained_model_exports(trained, tiny_records, tmp_path):
    model, _, _ = trained
    path = export_retinanet(model, tmp_path / "saved_model", tiny_records.class_names)
    image = tf.zeros((48, 80, 3), tf.uint8)
    out = tf.saved_model.load(path).signatures["serving_default"](
        image_bytes=tf.io.encode_png(image)
    )
    assert int(out["num_detections"]) == out["boxes"].shape[0]


@pytest.mark.slow
def test_family_protocol_trains_evaluates_and_exports(tiny_records, tmp_path):
    family = get_family("retinanet")
    options = {**family.defaults["train"], "image_size": 64, "batch_size": 4, "epochs": 1}
    numbers = family.train(
        tiny_records,
        train_dir=tmp_path,
        history_csv=tmp_path / "history.csv",
        checkpoint_dir=tmp_path / "checkpoints",
        strategy=tf.distribute.get_strategy(),
        init_dir=None,
        **options,
    )
    assert np.isfinite(numbers["final_loss"]) and (tmp_path / "model.keras").exists()
    header = (tmp_path / "history.csv").read_text().splitlines()[0].split(",")
    assert set(family.history_columns) <= set(header)
    evaluation = family.evaluate(
        tiny_records,
        train_dir=tmp_path,
        saved_model=tmp_path / "saved_model",
        **family.defaults["evaluate"],
    )
    assert {"mAP50", "mAP", "test_images", "per_class"} <= set(evaluation.metrics)
    assert "pr_curves.png" in evaluation.figures and evaluation.pr_result is not None
    assert "confusion.csv" in evaluation.tables  # a declared DVC plot of evaluate@NAME
    assert (tmp_path / "saved_model" / "saved_model.pb").exists()


def test_init_from_another_experiment_goes_through_a_preset_folder(tmp_path):
    from kdet.models.retinanet.family import MODEL_FILE, _init_preset

    model = build_retinanet(num_classes=2, image_size=64)
    (tmp_path / "init").mkdir()
    model.save(tmp_path / "init" / MODEL_FILE)
    preset = _init_preset(tmp_path / "init", tmp_path)
    again = build_retinanet(num_classes=2, image_size=64, weights=preset)
    images, _ = _batch()
    expected = model(model.preprocessor(images))
    for key, value in again(again.preprocessor(images)).items():
        np.testing.assert_allclose(value, expected[key], rtol=1e-5, atol=1e-5)
