import keras
import numpy as np
import pytest

from kdet.models.rcnn import train as rcnn_train
from kdet.models.rcnn.box_coder import decode_box_deltas
from kdet.models.rcnn.train import (
    build_crop_dataset,
    crop_pipeline,
    mine_hard_negatives,
    train_rcnn_classifier,
)


@pytest.fixture
def proposals(square_records):
    """Per image: its box (positive), a near copy (positive), two background corners."""
    found = {}
    for record in square_records.records:
        box = record.boxes_array()[0]
        found[record.image] = np.array(
            [box, box + [1, 1, 1, 0], [0, 0, 4, 4], [60, 60, 64, 64]], np.float32
        )
    return found


@pytest.mark.parametrize("with_box_targets", [False, True])
def test_augmented_crops_repeat_under_the_same_seed(with_box_targets):
    # A parallel map handed the stateful random draws out in thread order: same seed,
    # different augmentation (R-CNN runs of one seed could not be repeated).
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 255, (128, 16, 16, 3), dtype=np.uint8)
    labels = rng.integers(0, 2, 128).astype("int32")
    extra = {"box_targets": rng.normal(size=(128, 5)).astype("float32")} if with_box_targets else {}

    def one_epoch():
        keras.utils.set_random_seed(3)
        batches = crop_pipeline(
            crops, labels, batch_size=8, augment=True, shuffle=True, seed=3, **extra
        )
        return np.concatenate([x.numpy() for x, _ in batches])

    first = one_epoch()
    for _ in range(3):
        np.testing.assert_array_equal(one_epoch(), first)


def test_tutorial_crops_are_labelled_and_cut_like_the_detector(square_records, proposals):
    crops, labels, targets = build_crop_dataset(
        square_records, proposals, crop_size=16, labelling="tutorial"
    )
    assert crops.shape == (16, 16, 16, 3) and crops.dtype == np.uint8
    assert labels.tolist() == [1, 1, 0, 0] * 4
    assert crops[labels == 1].mean() > 200 and crops[labels == 0].mean() < 40
    assert targets[:, 4].tolist() == labels.tolist() and (targets[labels == 0, :4] == 0).all()
    with pytest.raises(KeyError, match="img0.png"):
        build_crop_dataset(square_records, {}, crop_size=16)
    with pytest.raises(ValueError, match="labelling.*'papers'"):
        build_crop_dataset(square_records, proposals, crop_size=16, labelling="papers")


def test_paper_crops_add_the_ground_truth_with_box_targets(square_records, proposals):
    crops, labels, targets = build_crop_dataset(square_records, proposals, crop_size=16)
    # Positives: the box, its near copy and the ground truth; 2 backgrounds (all there are).
    assert labels.tolist() == [1, 1, 1, 0, 0] * 4
    assert targets[:, 4].tolist() == labels.tolist() and (targets[labels == 0, :4] == 0).all()
    # Only the near copy has non-zero targets, and they take it back onto the ground truth.
    box = square_records.records[0].boxes_array()[0]
    moving = [t[:4] for t in targets[:3] if np.abs(t[:4]).sum() > 0.1]
    assert len(moving) == 1
    np.testing.assert_allclose(decode_box_deltas(box + [1, 1, 1, 0], moving[0]), box, atol=1e-3)


def test_tutorial_training_splits_crops_by_image(square_records, proposals):
    model, info = train_rcnn_classifier(
        square_records,
        proposals,
        backbone="small_cnn",
        input_size=32,
        epochs=2,
        batch_size=4,
        validation_fraction=0.25,
        labelling="tutorial",
    )
    # 3 training images and 1 validation image, 2 positives + 2 negatives each.
    assert info["crops"] == {"train": {0: 6, 1: 6}, "validation": {0: 2, 1: 2}}
    assert len(info["history"]["val_loss"]) == 2
    assert model.output_shape == (None, 2)  # classification only
    assert len(info["validation_images"]) == 1


def test_paper_training_adds_per_class_box_regression(square_records, proposals):
    model, info = train_rcnn_classifier(
        square_records,
        proposals,
        backbone="small_cnn",
        input_size=32,
        epochs=1,
        batch_size=4,
        validation_fraction=0.25,
    )
    assert info["crops"] == {"train": {0: 6, 1: 9}, "validation": {0: 2, 1: 3}}
    assert sorted(model.output_names) == ["box_delta", "class_label"]
    assert model.output["box_delta"].shape == (None, 1, 4)
    assert {"box_delta_loss", "val_class_label_accuracy"} <= set(info["history"])


def constant_classifier(object_probability: float, crop_size: int = 16) -> keras.Model:
    """Calls every crop an object with ``object_probability`` (background: the rest)."""
    inputs = keras.Input((crop_size, crop_size, 3))
    logit = np.log(object_probability / (1 - object_probability))
    scores = keras.layers.Dense(
        2, kernel_initializer="zeros", bias_initializer=keras.initializers.Constant([0, logit])
    )(keras.layers.GlobalAveragePooling2D()(inputs))
    return keras.Model(inputs, keras.layers.Softmax()(scores))


def test_mining_keeps_confident_proposals_away_from_every_object(square_records, proposals):
    # Only the two corners overlap no square; both score 0.9.
    crops, labels, targets = mine_hard_negatives(
        constant_classifier(0.9), square_records, proposals, crop_size=16, max_per_image=8
    )
    assert crops.shape == (8, 16, 16, 3) and crops.dtype == np.uint8
    assert crops.mean() < 40  # dark corners, not the bright squares
    assert labels.tolist() == [0] * 8 and not targets.any()
    capped = mine_hard_negatives(
        constant_classifier(0.9), square_records, proposals, crop_size=16, max_per_image=1
    )
    assert len(capped[0]) == 4
    unsure = mine_hard_negatives(
        constant_classifier(0.4), square_records, proposals, crop_size=16, score_threshold=0.5
    )
    assert len(unsure[0]) == 0 and unsure[0].shape[1:] == (16, 16, 3)


def test_mining_round_trains_on_its_false_positives_and_resumes(
    square_records, proposals, tmp_path, monkeypatch
):
    options = {
        "backbone": "small_cnn",
        "input_size": 32,
        "epochs": 1,
        "batch_size": 4,
        "validation_fraction": 0.25,
        "hard_negative_mining": {"rounds": 1, "epochs": 2, "score_threshold": 0.0},
        "checkpoint_dir": tmp_path / "ckpt",
        "history_csv": tmp_path / "history.csv",
    }
    _, info = train_rcnn_classifier(square_records, proposals, **options)
    # score_threshold 0: both corners of the 3 training images join the background.
    assert info["mined_negatives"] == [6]
    assert info["crops"]["train"] == {0: 12, 1: 9}
    assert len(info["history"]["loss"]) == 3  # 1 epoch, then 2 more after mining
    lines = (tmp_path / "history.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in lines[1:]] == ["0", "1", "2"]
    rounds = tmp_path / "ckpt" / "rounds"
    assert (rounds / "round_0" / "model.keras").exists() and (rounds / "mined_1.npz").exists()

    # Killed in the mining round: the next call starts from the finished first round and
    # its mined crops, and only trains the mining round again.
    calls = []
    real_fit = rcnn_train.fit
    monkeypatch.setattr(rcnn_train, "fit", lambda *a, **k: calls.append(k) or real_fit(*a, **k))
    monkeypatch.setattr(rcnn_train, "mine_hard_negatives", lambda *a, **k: 1 / 0)
    _, again = train_rcnn_classifier(square_records, proposals, **options)
    assert [call["initial_epoch"] for call in calls] == [1]
    assert again["mined_negatives"] == [6] and len(again["history"]["loss"]) == 3


def test_mining_starts_from_a_trained_classifier(square_records, proposals, tmp_path):
    options = {"backbone": "small_cnn", "input_size": 32, "batch_size": 4, "epochs": 1}
    first, _ = train_rcnn_classifier(square_records, proposals, **options)
    first.save(tmp_path / "first.keras")
    mining = {"rounds": 1, "epochs": 1, "score_threshold": 0.0}
    model, info = train_rcnn_classifier(
        square_records,
        proposals,
        **options,
        hard_negative_mining=mining,
        initial_model=tmp_path / "first.keras",
    )
    assert len(info["history"]["loss"]) == 1 and info["mined_negatives"][0] > 0
    assert model.optimizer.iterations > first.optimizer.iterations  # it went on training
    with pytest.raises(ValueError, match=r"first.keras: .* takes 32x32 crops.*needs 16x16"):
        train_rcnn_classifier(
            square_records,
            proposals,
            **{**options, "input_size": 16},
            initial_model=tmp_path / "first.keras",
        )
