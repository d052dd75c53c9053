import keras
import numpy as np
import tensorflow as tf

from kdet.models import get_model
from kdet.models.rcnn.fast_rcnn import FastRCNNDetector, RoIAlign, roi_pipeline, train_fast_rcnn
from tests.models.rcnn.conftest import square_image


def test_roi_align_pools_the_right_region():
    # Feature map whose value is the column index: a region's pooled values span its columns.
    feature_map = tf.tile(tf.range(8, dtype=tf.float32)[None, None, :, None], (2, 8, 1, 1))
    rois = tf.constant([[[0.0, 0.0, 0.5, 1.0]], [[0.5, 0.0, 1.0, 1.0]]])
    pooled = RoIAlign(pool_size=2)(feature_map, rois).numpy()
    assert pooled.shape == (2, 1, 2, 2, 1)
    assert pooled[0].max() <= 3.5 and pooled[1].min() >= 3.5


def test_augmented_regions_repeat_under_the_same_seed():
    # A parallel map handed the stateful random draws out in thread order: same seed,
    # different flips (Fast R-CNN runs of one seed differed from the first epoch).
    rng = np.random.default_rng(0)
    data = {
        "images": rng.integers(0, 255, (64, 16, 16, 3), dtype=np.uint8),
        "rois": np.sort(rng.uniform(0, 1, (64, 4, 4)), axis=-1).astype("float32"),
        "labels": rng.integers(0, 2, (64, 4)).astype("int32"),
        "box_targets": rng.normal(size=(64, 4, 5)).astype("float32"),
    }

    def one_epoch():
        keras.utils.set_random_seed(3)
        batches = roi_pipeline(data, batch_size=8, augment=True, shuffle=True, seed=3)
        return np.concatenate([inputs["images"].numpy() for inputs, _ in batches])

    first = one_epoch()
    for _ in range(3):
        np.testing.assert_array_equal(one_epoch(), first)


def test_keras_round_trip(tmp_path):
    model = get_model("fast_rcnn", backbone="small_cnn", image_size=64, pool_size=3)
    inputs = {
        "images": np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype("float32"),
        "rois": np.tile(np.array([[[0, 0, 0.5, 0.5], [0.2, 0.3, 0.9, 1.0]]], "float32"), (2, 1, 1)),
    }
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    expected, got = model.predict(inputs, verbose=0), loaded.predict(inputs, verbose=0)
    assert got["class_label"].shape == (2, 2, 2) and got["box_delta"].shape == (2, 2, 4)
    for key in expected:
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-5, atol=1e-6)


def test_train_and_detect_in_original_pixels(square_records):
    proposals = {
        r.image: np.array([[0, 0, 32, 32], [32, 32, 64, 64], [10, 10, 50, 50]], np.float32)
        for r in square_records.records
    }
    model, info = train_fast_rcnn(
        square_records,
        proposals,
        image_size=64,
        pool_size=3,
        dense_units=16,
        epochs=1,
        batch_size=4,
        rois_per_image=8,
        samples_per_image=1,
        validation_fraction=0.25,
    )
    assert {"loss", "val_loss"} <= set(info["history"])
    assert len(info["validation_images"]) == 1  # 1 of the 4 images, as R-CNN's training
    image = np.kron(square_image(), np.ones((2, 3, 1), np.uint8))  # 128 x 192, not square
    boxes = np.array([[30, 40, 130, 100], [0, 0, 60, 60]], np.float32)
    detector = FastRCNNDetector(model, score_threshold=0.0, iou_threshold=1.0)
    out = detector(image, boxes)
    assert out["boxes"].shape[0] == 2
    assert (out["boxes"].numpy() >= 0).all() and (out["boxes"].numpy()[:, 2] <= 192).all()
    fixed = FastRCNNDetector(model, score_threshold=0.0, iou_threshold=1.0, regress=False)
    assert sorted(fixed(image, boxes)["boxes"].numpy().tolist()) == sorted(boxes.tolist())
