"""Labelling proposals for training: R-CNN's two rules and Fast R-CNN's sampler.

R-CNN as in Girshick et al. (2014) (:func:`label_proposals_paper`, ``labelling:
paper``): positives have IoU >= 0.5 with a ground-truth box (the boxes themselves join
them), background is drawn from proposals with best IoU in [0.1, 0.5) (hard negatives)
plus random ones below 0.1, a quarter of the regions being positives. The R-CNN
tutorial's rule (:func:`label_proposals`, ``labelling: tutorial``): a proposal is a
*positive* of its best ground-truth box's class when their IoU is >= 0.7, a *negative*
(background) when its IoU with every ground-truth box is < 0.05 and it does not lie
fully inside one; at most 30 positives and 10 negatives per image, taken in proposal
order. Fast R-CNN (:func:`sample_rois`) samples a fixed number of regions per image
with regression targets. All work per image, so a split by image
(:func:`split_by_image`) keeps every crop of an image on one side.

Example:
    >>> import numpy as np
    >>> gt = np.array([[10, 10, 50, 50]], np.float32)
    >>> props = np.array([[10, 10, 50, 52], [60, 60, 90, 90], [20, 20, 30, 30]], np.float32)
    >>> label_proposals(props, gt, np.array([0])).labels.tolist()
    [1, 0]
"""

from __future__ import annotations

import dataclasses

import numpy as np

from kdet.bounding_box import compute_iou
from kdet.datasets.records import RecordSet

BACKGROUND = 0  # label of background crops; object class c gets label c + 1


@dataclasses.dataclass
class LabelledRegions:
    """Regions of one image chosen for training.

    Attributes:
        boxes: float32 ``(M, 4)`` xyxy pixels.
        labels: int32 ``(M,)``; 0 is background, ``c + 1`` is object class ``c``.
        matched: float32 ``(M, 4)``: the ground-truth box each region was matched to
            (the region itself for background), for box-regression targets.
    """

    boxes: np.ndarray
    labels: np.ndarray
    matched: np.ndarray


def iou_matrix(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of two sets of xyxy boxes, ``(len(a), len(b))`` NumPy array."""
    if len(boxes_a) == 0 or len(boxes_b) == 0:
        return np.zeros((len(boxes_a), len(boxes_b)), np.float32)
    return compute_iou(
        np.asarray(boxes_a, np.float32), np.asarray(boxes_b, np.float32), bounding_box_format="xyxy"
    )


def _best_match(regions: np.ndarray, gt_boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each region's best-overlapping ground-truth box and that IoU (0 without boxes)."""
    if not len(gt_boxes):
        return np.zeros(len(regions), np.int64), np.zeros(len(regions), np.float32)
    iou = iou_matrix(regions, gt_boxes)
    return iou.argmax(axis=1), iou.max(axis=1)


def _labelled(regions, positives, negatives, best, gt_boxes, gt_classes) -> LabelledRegions:
    """``regions[positives]`` labelled with their best box's class, then background."""
    positives, negatives = np.asarray(positives, np.int64), np.asarray(negatives, np.int64)
    labels = np.concatenate([gt_classes[best[positives]] + 1, np.full(len(negatives), BACKGROUND)])
    matched = np.concatenate([gt_boxes[best[positives]].reshape(-1, 4), regions[negatives]])
    return LabelledRegions(
        regions[np.concatenate([positives, negatives])],
        labels.astype(np.int32),
        matched.astype(np.float32),
    )


def label_proposals(
    proposals: np.ndarray,
    gt_boxes: np.ndarray,
    gt_classes: np.ndarray,
    *,
    positive_iou: float = 0.7,
    negative_iou: float = 0.05,
    max_positives: int = 30,
    max_negatives: int = 10,
) -> LabelledRegions:
    """The R-CNN tutorial's labelling rule for one image (see the module docstring).

    Args:
        proposals: ``(N, 4)`` xyxy pixels, in proposal order.
        gt_boxes: ``(G, 4)`` xyxy pixels.
        gt_classes: ``(G,)`` class ids.
        positive_iou: minimum IoU with a ground-truth box for a positive.
        negative_iou: a negative's IoU with every ground-truth box is below this.
        max_positives: positives kept per image (the first ones in proposal order).
        max_negatives: negatives kept per image.

    Returns:
        :class:`LabelledRegions`, positives first.
    """
    proposals = np.asarray(proposals, np.float32).reshape(-1, 4)
    gt_boxes = np.asarray(gt_boxes, np.float32).reshape(-1, 4)
    gt_classes = np.asarray(gt_classes, np.int32).reshape(-1)
    best, best_iou = _best_match(proposals, gt_boxes)
    inside = (  # lies fully inside a ground-truth box
        (proposals[:, None, 0] >= gt_boxes[None, :, 0])
        & (proposals[:, None, 1] >= gt_boxes[None, :, 1])
        & (proposals[:, None, 2] <= gt_boxes[None, :, 2])
        & (proposals[:, None, 3] <= gt_boxes[None, :, 3])
    ).any(axis=1)
    positive = np.flatnonzero(best_iou >= positive_iou)[:max_positives]
    negative = np.flatnonzero((best_iou < negative_iou) & ~inside)[:max_negatives]
    return _labelled(proposals, positive, negative, best, gt_boxes, gt_classes)


def label_proposals_paper(
    proposals: np.ndarray,
    gt_boxes: np.ndarray,
    gt_classes: np.ndarray,
    *,
    rng: np.random.Generator,
    positive_iou: float = 0.5,
    background_iou: float = 0.1,
    positive_fraction: float = 0.25,
    hard_negative_fraction: float = 0.75,
    max_positives: int = 16,
    max_negatives: int = 48,
    add_ground_truth: bool = True,
) -> LabelledRegions:
    """R-CNN's fine-tuning labels (Girshick et al., 2014) for one image, drawn at random.

    Positives: distinct regions with IoU >= ``positive_iou`` to a ground-truth box
    (label: that box's class), at most ``max_positives``. Background: as many regions
    as make positives ``positive_fraction`` of the image's regions (as many as one
    positive would ask for when there is none), at most ``max_negatives``;
    ``hard_negative_fraction`` of them from best IoU in ``[background_iou,
    positive_iou)``, the rest from below ``background_iou``, either pool topping up the
    other when it runs short. No region is drawn twice.

    Args:
        proposals: ``(N, 4)`` xyxy pixels.
        gt_boxes: ``(G, 4)`` xyxy pixels.
        gt_classes: ``(G,)`` class ids.
        rng: draws the regions.
        add_ground_truth: the ground-truth boxes join the candidates (as positives).

    Returns:
        :class:`LabelledRegions`: positives, then hard negatives, then random background.

    Example:
        >>> gt = np.array([[10, 10, 50, 50]], np.float32)
        >>> props = np.array([[12, 10, 50, 50], [30, 30, 80, 80], [60, 60, 90, 90]], np.float32)
        >>> label_proposals_paper(props, gt, [0], rng=np.random.default_rng(0)).labels.tolist()
        [1, 1, 0, 0]
    """
    gt_boxes = np.asarray(gt_boxes, np.float32).reshape(-1, 4)
    gt_classes = np.asarray(gt_classes, np.int32).reshape(-1)
    candidates = np.asarray(proposals, np.float32).reshape(-1, 4)
    if add_ground_truth:
        candidates = np.concatenate([candidates, gt_boxes])
    best, best_iou = _best_match(candidates, gt_boxes)

    def draw(pool, count):
        return rng.choice(pool, min(count, len(pool)), replace=False).astype(np.int64)

    pos = draw(np.flatnonzero(best_iou >= positive_iou), max_positives)
    num_bg = min(
        max_negatives, round(max(len(pos), 1) * (1 - positive_fraction) / positive_fraction)
    )
    hard_pool = np.flatnonzero((best_iou >= background_iou) & (best_iou < positive_iou))
    easy_pool = np.flatnonzero(best_iou < background_iou)
    num_easy = min(
        len(easy_pool), num_bg - min(len(hard_pool), round(num_bg * hard_negative_fraction))
    )
    hard = draw(hard_pool, num_bg - num_easy)
    easy = draw(easy_pool, num_bg - len(hard))
    return _labelled(candidates, pos, np.concatenate([hard, easy]), best, gt_boxes, gt_classes)


def sample_rois(
    proposals: np.ndarray,
    gt_boxes: np.ndarray,
    gt_classes: np.ndarray,
    *,
    rois_per_image: int = 32,
    positive_fraction: float = 0.25,
    positive_iou: float = 0.5,
    negative_iou: float = 0.5,
    rng: np.random.Generator,
) -> LabelledRegions:
    """Fast R-CNN's sampler: a fixed number of regions per image, some positive.

    The ground-truth boxes join the candidates (as in Fast R-CNN), so every image with an
    object has positives. Positives have IoU >= ``positive_iou`` with a ground-truth box;
    negatives have IoU < ``negative_iou`` with all of them. Up to
    ``positive_fraction`` of the regions are distinct positives, the rest negatives
    (drawn with replacement when there are too few).

    Returns:
        :class:`LabelledRegions` with exactly ``rois_per_image`` regions.
    """
    gt_boxes = np.asarray(gt_boxes, np.float32).reshape(-1, 4)
    candidates = np.concatenate([np.asarray(proposals, np.float32).reshape(-1, 4), gt_boxes])
    best, best_iou = _best_match(candidates, gt_boxes)
    positives = np.flatnonzero(best_iou >= positive_iou)
    negatives = np.flatnonzero(best_iou < negative_iou)
    num_pos = min(len(positives), round(rois_per_image * positive_fraction))
    if len(negatives) == 0:
        num_pos = rois_per_image if len(positives) else 0
    if num_pos == 0 and len(negatives) == 0:
        raise ValueError("sample_rois needs at least one proposal or ground-truth box")
    pos = rng.choice(positives, num_pos, replace=len(positives) < num_pos) if num_pos else []
    num_neg = rois_per_image - num_pos
    neg = rng.choice(negatives, num_neg, replace=len(negatives) < num_neg) if num_neg else []
    gt_classes = np.asarray(gt_classes, np.int32).reshape(-1)
    return _labelled(candidates, pos, neg, best, gt_boxes, gt_classes)


def split_by_image(
    record_set: RecordSet, validation_fraction: float, seed: int
) -> tuple[RecordSet, RecordSet]:
    """Split images (never crops) into ``(train, validation)`` record sets, seeded.

    Example:
        >>> from kdet.datasets.records import Record
        >>> rs = RecordSet("t", ["a"], [Record(f"{i}.jpg", 8, 8, [], []) for i in range(10)])
        >>> [len(s) for s in split_by_image(rs, 0.2, seed=0)]
        [8, 2]
    """
    if not 0 <= validation_fraction < 1:
        raise ValueError(f"validation_fraction must be in [0, 1). Received: {validation_fraction=}")
    order = np.random.default_rng(seed).permutation(len(record_set.records))
    num_val = round(len(order) * validation_fraction)
    val = sorted(order[:num_val].tolist())
    train = sorted(order[num_val:].tolist())
    pick = lambda idx: dataclasses.replace(  # noqa: E731
        record_set, records=[record_set.records[i] for i in idx]
    )
    return pick(train), pick(val)
