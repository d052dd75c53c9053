"""One tiny training run shared by the training, evaluation and export tests."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from kdet.families import get_family, merge_options
from kdet.latency import measure_latency
from kdet.models.yolov8.evaluate import evaluate_yolov8, predict_records
from kdet.models.yolov8.export import export_yolov8
from kdet.models.yolov8.train import train_yolov8
from kdet.visualize import prediction_grid

# Slow (YOLOv8 trained in a module fixture); the default suite trains, evaluates and exports
# YOLOv8 through the runner (tests/test_experiment.py) and serves it (tests/test_contract.py).
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tiny_records, tmp_path_factory):
    folder = tmp_path_factory.mktemp("yolo")
    model, history = train_yolov8(
        tiny_records.split("train"),
        tiny_records.split("test"),
        image_size=64,
        batch_size=4,
        epochs=2,
        precision="float32",
        history_csv=folder / "history.csv",
        checkpoint_dir=folder / "checkpoints",
    )
    return model, history, folder


def test_training_logs_finite_losses_and_throughput(trained):
    model, history, folder = trained
    assert len(history["loss"]) == 2 and np.isfinite(history["val_loss"]).all()
    assert history["box_loss"][-1] > 0 and history["class_loss"][-1] > 0
    assert all(v > 0 for v in history["images_per_s"])
    assert (folder / "history.csv").read_text().count("\n") == 3
    # a completed run deletes its resumable backup (kdet.training.fit) and keeps no .keras
    assert not (folder / "checkpoints" / "backup").exists()
    assert not list(folder.rglob("*.keras"))


def test_evaluation_reports_every_class_in_original_pixels(trained, tiny_records):
    model, _, _ = trained
    test = tiny_records.split("test")
    result, predictions = evaluate_yolov8(model, test, image_size=64)
    assert len(predictions) == len(test)
    metrics = result.as_metrics()
    assert 0.0 <= metrics["mAP50"] <= 1.0 and 0.0 <= metrics["mAP"] <= metrics["mAP50"]
    assert set(result.class_names) == {"red_square", "green_bar"}  # class 0 kept
    boxes = np.concatenate([p["boxes"] for p in predictions])
    assert len(boxes) > 0
    assert boxes[:, 2].max() <= 80 + 1e-3 and boxes[:, 3].max() <= 48 + 1e-3  # 80x48 images
    figure = prediction_grid(test, predictions, score_threshold=0.0)
    assert len(figure.axes) == len(test)
    assert all(len(axes.images) == 1 for axes in figure.axes)  # drawn by kdet.visualize


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    model, _, _ = trained
    path = tmp_path_factory.mktemp("export") / "saved_model"
    export_yolov8(model, path, ["red_square", "green_bar"], confidence_threshold=0.001)
    return path


def test_saved_model_matches_evaluation_predictions(trained, exported, tiny_records):
    model, _, _ = trained
    test = tiny_records.split("test")
    expected = predict_records(
        model,
        test,
        image_size=64,
        confidence_threshold=0.001,
        iou_threshold=model.prediction_decoder.iou_threshold,
    )[0]
    image = tf.io.decode_png(tf.io.read_file(str(test.image_path(test.records[0]))))
    served = tf.saved_model.load(str(exported))
    out = served.signatures["detect_image"](image=image)
    count = int(out["num_detections"])
    assert count == len(expected["scores"]) > 0
    np.testing.assert_allclose(out["boxes"].numpy(), expected["boxes"], atol=1e-2)
    np.testing.assert_allclose(out["scores"].numpy(), expected["scores"], atol=1e-4)


def test_plain_tensorflow_process_reads_jpeg_bytes(exported, tmp_path):
    from PIL import Image

    jpeg = tmp_path / "a.jpg"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (90, 130, 3), dtype=np.uint8)).save(jpeg)
    script = textwrap.dedent(
        f"""
        import sys, tensorflow as tf
        served = tf.saved_model.load({str(exported)!r})
        out = served.signatures["serving_default"](image_bytes=tf.io.read_file({str(jpeg)!r}))
        n = int(out["num_detections"])
        assert out["boxes"].shape == (n, 4) and out["scores"].shape == (n,), out
        assert n > 0
        boxes = out["boxes"].numpy()
        assert (boxes >= 0).all() and (boxes[:, [0, 2]] <= 130).all()
        assert (boxes[:, [1, 3]] <= 90).all()
        assert set(out["class_names"].numpy()) <= {{b"red_square", b"green_bar"}}
        assert "kdet" not in sys.modules and "keras_cv" not in sys.modules
        print("ok")
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.stdout.strip().endswith("ok"), result.stderr[-3000:]


def test_latency_is_measured(exported):
    latency = measure_latency(exported, np.zeros((48, 80, 3), np.uint8), warmup=1, repeats=3)
    assert 0 < latency["latency_ms"] <= latency["latency_p90_ms"]


def test_export_rejects_wrong_class_names(trained, tmp_path):
    model, _, _ = trained
    with pytest.raises(ValueError, match="class_names has 1 names"):
        export_yolov8(model, tmp_path / "m", ["only_one"])


def test_family_evaluation_counts_detections_at_the_export_threshold(
    trained, tiny_records, tmp_path
):
    model, _, _ = trained
    model.save(tmp_path / "model.keras")
    family = get_family("yolov8")
    options = merge_options(family.defaults["evaluate"], {"batch_size": 4}, "test")
    evaluation = family.evaluate(
        tiny_records, train_dir=tmp_path, saved_model=tmp_path / "saved_model", **options
    )
    threshold = options["export_decoder"]["confidence_threshold"]
    assert evaluation.metrics["operating_threshold"] == threshold
    assert set(evaluation.figures) == {
        "pr_curves.png",
        "predictions.png",
        "detection_confusion.png",
    }
    for numbers in evaluation.metrics["per_class"].values():
        assert set(numbers) == {"precision", "recall", "ap50"}
    # Evaluated at 0.001 (complete PR curves), counted at the export threshold.
    test = tiny_records.split("test")
    rows = evaluation.tables["confusion.csv"]
    assert (
        sum(r["predicted"] != "missed" for r in rows) <= evaluation.pr_result.num_detections.sum()
    )
    assert sum(r["actual"] != "background" for r in rows) == sum(
        len(r.classes) for r in test.records
    )
