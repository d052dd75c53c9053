"""Per-class precision/recall and the detection confusion matrix on hand-made cases."""

import math

import numpy as np
import pytest

from kdet.metrics import (
    confusion_rows,
    operating_point,
    per_class_metrics,
    plot_detection_confusion,
)

NAMES = ["cat", "dog"]
CAT_BOX, DOG_BOX, EMPTY_BOX = [0, 0, 10, 10], [20, 20, 40, 40], [50, 50, 60, 60]
GT = [{"boxes": [CAT_BOX, DOG_BOX], "classes": [0, 1]}]


def point(boxes, scores, classes, ground_truth=GT, **options):
    detections = [{"boxes": boxes, "scores": scores, "classes": classes}]
    return operating_point(ground_truth, detections, NAMES, score_threshold=0.5, **options)


def counts(result, name):
    c = result["per_class"][name]
    return c["tp"], c["fp"], c["fn"]


def test_perfect_detections_fill_the_diagonal():
    result = point([CAT_BOX, DOG_BOX], [0.9, 0.8], [0, 1])
    assert result["matrix"].tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 0]]
    assert counts(result, "cat") == (1, 0, 0) and counts(result, "dog") == (1, 0, 0)
    assert result["per_class"]["cat"]["precision"] == 1.0
    assert result["per_class"]["dog"]["recall"] == 1.0


def test_a_detection_on_nothing_is_background():
    result = point([CAT_BOX, DOG_BOX, EMPTY_BOX], [0.9, 0.8, 0.7], [0, 1, 1])
    assert result["matrix"].tolist() == [[1, 0, 0], [0, 1, 0], [0, 1, 0]]
    assert counts(result, "dog") == (1, 1, 0)
    assert result["per_class"]["dog"]["precision"] == 0.5
    assert result["per_class"]["dog"]["recall"] == 1.0


def test_a_box_nobody_found_is_missed():
    result = point([CAT_BOX], [0.9], [0])
    assert result["matrix"].tolist() == [[1, 0, 0], [0, 0, 1], [0, 0, 0]]
    assert counts(result, "dog") == (0, 0, 1)
    assert result["per_class"]["dog"]["recall"] == 0.0
    assert math.isnan(result["per_class"]["dog"]["precision"])


def test_a_class_swap_is_confusion_not_background_or_missed():
    result = point([CAT_BOX, DOG_BOX], [0.9, 0.8], [1, 0])
    assert result["matrix"].tolist() == [[0, 1, 0], [1, 0, 0], [0, 0, 0]]
    assert counts(result, "cat") == (0, 1, 1) and counts(result, "dog") == (0, 1, 1)


def test_a_duplicate_detection_is_background():
    shifted = [0, 0, 10, 9]  # IoU 0.9 with the cat
    result = point([shifted, CAT_BOX, DOG_BOX], [0.6, 0.9, 0.8], [0, 0, 1])
    assert result["matrix"].tolist() == [[1, 0, 0], [0, 1, 0], [1, 0, 0]]
    assert counts(result, "cat") == (1, 1, 0)


def test_same_class_wins_over_a_better_overlap_of_another_class():
    ground_truth = [{"boxes": [[0, 0, 10, 10], [0, 0, 10, 8]], "classes": [1, 0]}]
    result = point([[0, 0, 10, 10]], [0.9], [0], ground_truth=ground_truth)
    assert result["matrix"].tolist() == [[1, 0, 0], [0, 0, 1], [0, 0, 0]]


def test_detections_below_the_threshold_are_ignored_and_padding_skipped():
    ground_truth = [{"boxes": [CAT_BOX, [-1, -1, -1, -1]], "classes": [0, -1]}]
    result = point([CAT_BOX, DOG_BOX], [0.9, 0.49], [0, 1], ground_truth=ground_truth)
    assert result["matrix"].tolist() == [[1, 0, 0], [0, 0, 0], [0, 0, 0]]


def test_counts_add_over_images_and_iou_threshold_counts():
    ground_truth = GT * 2
    detections = [{"boxes": [CAT_BOX], "scores": [0.9], "classes": [0]}] * 2
    result = operating_point(ground_truth, detections, NAMES, score_threshold=0.5)
    assert counts(result, "cat") == (2, 0, 0) and counts(result, "dog") == (0, 0, 2)
    half = point([[0, 0, 10, 5]], [0.9], [0], iou_threshold=0.6)  # IoU 0.5 < 0.6
    assert half["matrix"].tolist() == [[0, 0, 1], [0, 0, 1], [1, 0, 0]]


def test_other_box_formats_are_converted():
    boxes = [[0, 0, 10, 10], [20, 20, 20, 20]]  # xywh: the dog box is 20..40
    ground_truth = [{"boxes": [CAT_BOX, DOG_BOX], "classes": [0, 1]}]
    xywh = [{"boxes": boxes, "classes": [0, 1]}]
    result = point(boxes, [0.9, 0.8], [0, 1], ground_truth=xywh, bounding_box_format="xywh")
    assert np.trace(result["matrix"]) == 2
    shifted = point(boxes, [0.9, 0.8], [0, 1], ground_truth=ground_truth)  # read as xyxy
    assert np.trace(shifted["matrix"]) == 1


def test_bad_inputs_name_the_parameter():
    with pytest.raises(ValueError, match="len\\(detections\\)=0"):
        operating_point(GT, [], NAMES, score_threshold=0.5)
    with pytest.raises(ValueError, match="class id 2"):
        point([CAT_BOX], [0.9], [2])
    with pytest.raises(ValueError, match="iou_threshold"):
        point([CAT_BOX], [0.9], [0], iou_threshold=1.5)


def test_per_class_metrics_skip_classes_without_ground_truth():
    ground_truth = [{"boxes": [CAT_BOX], "classes": [0]}]
    result = point([DOG_BOX], [0.9], [1], ground_truth=ground_truth)
    assert per_class_metrics(result, {"cat": 0.0, "dog": float("nan")}) == {
        "cat": {"precision": 0.0, "recall": 0.0, "ap50": 0.0}
    }


def test_confusion_rows_and_figure_follow_the_matrix():
    matrix = point([CAT_BOX, DOG_BOX, EMPTY_BOX], [0.9, 0.8, 0.7], [1, 1, 0])["matrix"]
    rows = confusion_rows(matrix, NAMES)
    assert sorted((r["actual"], r["predicted"]) for r in rows) == [
        ("background", "cat"),
        ("cat", "dog"),
        ("dog", "dog"),
    ]
    figure = plot_detection_confusion(matrix, NAMES)
    axes = figure.axes[0]
    assert [t.get_text() for t in axes.get_xticklabels()] == ["cat", "dog", "missed"]
    assert [t.get_text() for t in axes.get_yticklabels()] == ["cat", "dog", "background"]
    with pytest.raises(ValueError, match="matrix.shape"):
        confusion_rows(matrix, ["cat"])
