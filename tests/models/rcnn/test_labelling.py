import numpy as np

from kdet.datasets.records import Record, RecordSet
from kdet.models.rcnn.labelling import (
    iou_matrix,
    label_proposals,
    label_proposals_paper,
    sample_rois,
    split_by_image,
)

GT = np.array([[100, 100, 200, 200]], np.float32)


def test_tutorial_rule_positive_negative_and_inside():
    proposals = np.array(
        [
            [100, 100, 200, 215],  # IoU 100*100/(100*115) = 0.87 -> positive
            [100, 100, 200, 250],  # IoU 0.67 -> neither
            [300, 300, 350, 350],  # IoU 0 -> negative
            [120, 120, 150, 150],  # IoU 0.09 but inside -> neither
            [110, 110, 130, 130],  # IoU 0.04 but fully inside the box -> not a negative
            [0, 0, 102, 102],  # IoU 4/10400 < 0.05, not inside -> negative
        ],
        np.float32,
    )
    regions = label_proposals(proposals, GT, np.array([2]))
    assert regions.boxes.tolist() == proposals[[0, 2, 5]].tolist()
    assert regions.labels.tolist() == [3, 0, 0]  # class 2 -> label 3, background 0
    assert regions.matched.tolist()[0] == GT[0].tolist()


def test_caps_keep_the_first_proposals_in_order():
    positives = np.tile(GT, (40, 1)) + np.arange(40, dtype=np.float32)[:, None] * 0.01
    negatives = np.array([[300 + i, 300, 320 + i, 320] for i in range(15)], np.float32)
    regions = label_proposals(np.concatenate([negatives, positives]), GT, np.array([0]))
    assert (regions.labels == 1).sum() == 30 and (regions.labels == 0).sum() == 10
    assert regions.boxes[:30].tolist() == positives[:30].tolist()
    assert regions.boxes[30:].tolist() == negatives[:10].tolist()
    few = label_proposals(positives, GT, np.array([0]), max_positives=5)
    assert len(few.boxes) == 5


def test_image_without_objects_gives_only_negatives():
    regions = label_proposals(GT, np.zeros((0, 4)), np.zeros(0))
    assert regions.labels.tolist() == [0]


def _shifted(dx, count):
    """``count`` copies of GT shifted right by ``dx`` pixels (plus a small jitter)."""
    return GT + np.array([[dx + 0.1 * i, 0, dx + 0.1 * i, 0] for i in range(count)], np.float32)


def test_paper_rule_positives_hard_negatives_and_random_background():
    positives = _shifted(20, 20)  # IoU ~0.67
    hard = _shifted(70, 30)  # IoU ~0.18: in [0.1, 0.5)
    easy = _shifted(150, 30)  # IoU 0
    proposals = np.concatenate([easy, hard, positives])
    regions = label_proposals_paper(proposals, GT, np.array([2]), rng=np.random.default_rng(0))
    iou = iou_matrix(regions.boxes, GT)[:, 0]
    # 16 positives (max_positives; 21 candidates with the ground truth), 3 backgrounds each
    # (25% positives) = 48 (max_negatives): 36 hard asked, 30 exist, 18 random background.
    assert regions.labels.tolist() == [3] * 16 + [0] * 48
    assert (iou[:16] >= 0.5).all()
    assert ((iou[16:46] >= 0.1) & (iou[16:46] < 0.5)).all() and (iou[46:] < 0.1).all()
    assert len(np.unique(regions.boxes, axis=0)) == 64  # nothing drawn twice
    assert (regions.matched[:16] == GT).all()
    assert (regions.matched[16:] == regions.boxes[16:]).all()


def test_paper_rule_keeps_a_quarter_positives_and_adds_the_ground_truth():
    proposals = np.concatenate([_shifted(70, 5), _shifted(150, 5)])  # no positive proposal
    regions = label_proposals_paper(proposals, GT, np.array([0]), rng=np.random.default_rng(1))
    # The ground truth is the one positive; 3 backgrounds: round(3 * 0.75) = 2 hard, 1 random.
    assert regions.boxes[:1].tolist() == GT.tolist() and regions.labels.tolist() == [1, 0, 0, 0]
    iou = iou_matrix(regions.boxes, GT)[:, 0]
    assert (iou[1:3] >= 0.1).all() and iou[3] < 0.1
    none = label_proposals_paper(
        proposals, GT, np.array([0]), rng=np.random.default_rng(1), add_ground_truth=False
    )
    assert (none.labels == 0).all()
    # Short of random background, hard negatives fill the quota (and the other way round).
    only_hard = label_proposals_paper(_shifted(70, 5), GT, [0], rng=np.random.default_rng(0))
    assert only_hard.labels.tolist() == [1, 0, 0, 0]
    empty = label_proposals_paper(
        _shifted(150, 5), np.zeros((0, 4)), [], rng=np.random.default_rng(0)
    )
    assert empty.labels.tolist() == [0, 0, 0]


def test_sample_rois_fixed_count_with_ground_truth_as_candidate():
    proposals = np.array([[300, 300, 350, 350], [0, 0, 50, 50]], np.float32)
    regions = sample_rois(
        proposals, GT, np.array([0]), rois_per_image=8, rng=np.random.default_rng(0)
    )
    assert len(regions.boxes) == 8
    # The only positive is the ground truth itself (25% would be 2: positives are distinct).
    assert regions.boxes[regions.labels == 1].tolist() == [GT[0].tolist()]
    assert (regions.labels == 0).sum() == 7
    many = np.tile(GT, (10, 1)) + np.arange(10, dtype=np.float32)[:, None]
    regions = sample_rois(
        np.concatenate([many, proposals]),
        GT,
        np.array([0]),
        rois_per_image=8,
        rng=np.random.default_rng(0),
    )
    assert (regions.labels == 1).sum() == 2


def test_split_by_image_keeps_every_image_on_one_side():
    records = [Record(f"{i}.jpg", 8, 8, [], []) for i in range(20)]
    train, val = split_by_image(RecordSet("t", ["a"], records), 0.25, seed=1)
    train_images = {r.image for r in train.records}
    val_images = {r.image for r in val.records}
    assert len(val_images) == 5 and not train_images & val_images
    assert len(train_images | val_images) == 20
    again, _ = split_by_image(RecordSet("t", ["a"], records), 0.25, seed=1)
    assert [r.image for r in again.records] == [r.image for r in train.records]
