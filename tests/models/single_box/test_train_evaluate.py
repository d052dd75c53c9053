import json
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from kdet.models.single_box import train_single_box
from kdet.models.single_box.evaluate import evaluate_single_box, prediction_grid
from kdet.models.single_box.serving import export_single_box_model

TINY = {"backbone": "small_cnn", "box_units": (16,), "class_units": (16,)}


def test_frozen_backbone_trains_the_head_on_cached_features(toy_records, tmp_path):
    options = dict(
        model="bbox_regressor",
        class_names=["red"],
        model_options={"backbone": "small_cnn", "box_units": (16,), "trainable_blocks": 0},
        image_size=(64, 64),
        epochs=2,
        batch_size=4,
        feature_cache_dir=tmp_path / "features",
        history_csv=tmp_path / "history.csv",
        verbose=0,
    )
    first = train_single_box(toy_records, **options)
    assert first.info["feature_cache"] == "miss"
    assert first.model.output_names == ["bounding_box"]
    assert len(first.history["loss"]) == 2 and "val_loss" in first.history
    assert (tmp_path / "history.csv").read_text().count("\n") == 3
    second = train_single_box(toy_records, **options)
    assert second.info["feature_cache"] == "hit"
    # The trained head is part of the image model: both paths give the same boxes.
    rows = second.train_rows[:3]
    from_images = second.model.predict(second.data.images[rows].astype("float32"), verbose=0)
    evaluation = evaluate_single_box(
        second.model,
        second.data,
        class_names=["red"],
        train_rows=second.train_rows,
        test_rows=rows,
    )
    np.testing.assert_allclose(evaluation.pred_boxes, from_images["bounding_box"], atol=1e-5)
    assert set(np.unique(second.data.classes[second.train_rows])) == {0}


@pytest.mark.slow
def test_multiclass_training_evaluation_and_figures(toy_records, tmp_path):
    result = train_single_box(
        toy_records,
        model="multiclass_detector",
        model_options={
            **TINY,
            "trainable_blocks": "all",
            "learning_rate": 1e-3,
            "box_loss": "huber",
        },
        image_size=(64, 64),
        epochs=2,
        batch_size=6,
        augment=True,
        cosine_decay=True,
        start_at_mean_box=True,
        precision="mixed_bfloat16",
        checkpoint_dir=tmp_path / "checkpoints",
        verbose=0,
    )
    assert result.info["feature_cache"] == "off" and result.info["precision"] == "mixed_bfloat16"
    assert keras.mixed_precision.global_policy().name == "float32"  # restored
    assert not (tmp_path / "checkpoints" / "backup").exists()  # deleted when training ends
    assert not list(tmp_path.rglob("*.keras"))
    data = result.data
    evaluation = evaluate_single_box(
        result.model,
        data,
        class_names=result.class_names,
        train_rows=data.select("train"),
        test_rows=data.select("test"),
    )
    metrics = evaluation.metrics
    assert metrics["test_images"] == 8 and evaluation.confusion.sum() == 8
    assert 0.0 <= metrics["class_accuracy"] <= 1.0
    assert set(metrics["per_class"]) == {"red", "blue"}
    for numbers in [metrics, *metrics["per_class"].values()]:
        assert 0.0 <= numbers["mean_iou"] <= 1.0
        assert numbers["iou75_share"] <= numbers["iou50_share"]
        assert 0.0 < numbers["baseline_mean_iou"] <= 1.0
    figure = prediction_grid(data, evaluation, result.class_names, columns=3, rows=2)
    assert len(figure.axes) == 6


def test_baseline_is_the_class_mean_box(toy_records):
    result = train_single_box(
        toy_records,
        model="bbox_regressor",
        class_names=["blue"],
        model_options={"backbone": "small_cnn", "box_units": (4,)},
        image_size=(64, 64),
        epochs=1,
        verbose=0,
    )
    data = result.data
    train, test = data.select("train", ["blue"]), data.select("test", ["blue"])
    evaluation = evaluate_single_box(
        result.model, data, class_names=["blue"], train_rows=train, test_rows=test
    )
    mean_box = data.boxes[train].mean(axis=0)
    expected = []
    for box in data.boxes[test]:
        lo, hi = np.maximum(box[:2], mean_box[:2]), np.minimum(box[2:], mean_box[2:])
        inter = np.prod(np.clip(hi - lo, 0, None))
        union = np.prod(box[2:] - box[:2]) + np.prod(mean_box[2:] - mean_box[:2]) - inter
        expected.append(inter / union)
    assert evaluation.metrics["baseline_mean_iou"] == pytest.approx(np.mean(expected), rel=1e-5)


def test_saved_model_returns_boxes_in_the_images_pixels(toy_records, tmp_path):
    result = train_single_box(
        toy_records,
        model="multiclass_detector",
        model_options=TINY,
        image_size=(64, 64),
        epochs=1,
        verbose=0,
    )
    path = export_single_box_model(result.model, tmp_path / "saved_model", result.class_names)
    record = toy_records.records[3]
    image = toy_records.image_path(record)
    relative = result.model.predict(result.data.images[3:4].astype("float32"), verbose=0)
    expected = relative["bounding_box"][0] * ([record.width, record.height] * 2)
    script = textwrap.dedent(
        f"""
        import json, sys, tensorflow as tf
        served = tf.saved_model.load({str(path)!r})
        out = served.signatures["serving_default"](image_bytes=tf.io.read_file({str(image)!r}))
        print(json.dumps({{
            "boxes": out["boxes"].numpy().tolist(),
            "name": out["class_names"].numpy()[0].decode(),
            "score": float(out["scores"][0]),
            "kdet": "kdet" in sys.modules,
        }}))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(out["boxes"], [expected], atol=0.5)
    assert out["name"] in result.class_names and 0.0 < out["score"] <= 1.0
    assert not out["kdet"]
