import numpy as np
import pytest

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


def test_crops_are_labelled_and_cut_like_the_detector(square_records, proposals):
    crops, labels = build_crop_dataset(square_records, proposals, crop_size=16)
    assert crops.shape == (16, 16, 16, 3) and crops.dtype == np.uint8
    assert labels.tolist() == [1, 1, 0, 0] * 4
    assert crops[labels == 1].mean() > 200 and crops[labels == 0].mean() < 40
    with pytest.raises(KeyError, match="img0.png"):
        build_crop_dataset(square_records, {}, crop_size=16)


def test_training_splits_crops_by_image(square_records, proposals):
    model, info = train_rcnn_classifier(
        square_records,
        proposals,
        backbone="small_cnn",
        input_size=32,
        epochs=2,
        batch_size=4,
        validation_fraction=0.25,
    )
    # 3 training images and 1 validation image, 2 positives + 2 negatives each.
    assert info["crops"] == {"train": {0: 6, 1: 6}, "validation": {0: 2, 1: 2}}
    assert len(info["history"]["val_loss"]) == 2
    assert model.output_shape == (None, 2)
