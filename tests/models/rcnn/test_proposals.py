import numpy as np
import pytest

from kdet.errors import ImageError
from kdet.models.rcnn.labelling import iou_matrix
from kdet.models.rcnn.proposals import (
    load_proposals,
    proposal_recall,
    propose_records,
    save_proposals,
    selective_search,
)
from tests.models.rcnn.conftest import square_image


@pytest.mark.parametrize("mode", ["fast", "quality", "single"])
def test_selective_search_finds_the_square_in_image_pixels(mode):
    image = square_image(size=64)
    boxes = selective_search(image, mode=mode)
    assert boxes.dtype == np.float32 and boxes.shape[1] == 4
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
    assert (boxes >= 0).all() and (boxes <= 64).all()
    assert iou_matrix(np.array([[16, 20, 44, 52]], np.float32), boxes).max() > 0.8


def test_max_side_searches_small_and_scales_boxes_back():
    image = np.kron(square_image(size=64), np.ones((4, 4, 1), np.uint8))  # 256x256
    boxes = selective_search(image, max_side=64)
    assert [64, 80, 176, 208] in boxes.tolist()  # the 16..44 x 20..52 square, times 4
    assert len(selective_search(image, max_side=64, max_proposals=3)) == 3


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="mode must be one of"):
        selective_search(square_image(), mode="slow")
    with pytest.raises(ValueError, match="uint8"):
        selective_search(square_image().astype(np.float32))


def test_processes_give_the_same_proposals_and_recall(square_records):
    serial, timing = propose_records(square_records, processes=1)
    parallel, _ = propose_records(square_records, processes=2)
    assert serial.keys() == parallel.keys() == {r.image for r in square_records.records}
    for key in serial:
        np.testing.assert_array_equal(serial[key], parallel[key])
    assert timing["images"] == 4 and timing["seconds_per_image"] > 0
    recall = proposal_recall(serial, square_records)
    assert recall["recall_50"] == recall["recall_70"] == 1.0


def test_unreadable_image_names_the_file(square_records):
    (square_records.root / "img0.png").write_bytes(b"not an image")
    with pytest.raises(ImageError, match="img0.png"):
        propose_records(square_records, processes=1)


def test_recall_counts_ground_truth_boxes(square_records):
    proposals = {r.image: np.zeros((0, 4), np.float32) for r in square_records.records}
    proposals["img0.png"] = np.array([[16, 20, 44, 52]], np.float32)  # exact
    proposals["img1.png"] = np.array([[4, 4, 30, 24]], np.float32)  # IoU 20/30 = 0.67
    recall = proposal_recall(proposals, square_records)
    assert recall == {"recall_50": 0.5, "recall_70": 0.25, "proposals_per_image": 0.5}


def test_save_load_round_trip(tmp_path):
    proposals = {"a/b.jpg": np.array([[1, 2, 3, 4]], np.float32), "c.jpg": np.zeros((0, 4))}
    loaded = load_proposals(save_proposals(tmp_path / "p.npz", proposals))
    assert loaded.keys() == proposals.keys()
    np.testing.assert_array_equal(loaded["a/b.jpg"], proposals["a/b.jpg"])
    assert loaded["c.jpg"].shape == (0, 4)
