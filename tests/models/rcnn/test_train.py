import numpy as np
import pytest

from kdet.models.rcnn.box_coder import decode_box_deltas
from kdet.models.rcnn.train import build_crop_dataset, train_rcnn_classifier


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
