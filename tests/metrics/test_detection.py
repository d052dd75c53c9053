import contextlib
import io

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from kdet.metrics import DetectionEvaluator, evaluate_detections

CLASS_NAMES = ["zero", "one", "two"]


def _random_split(seed, num_images=30, num_classes=3, classes_with_gt=None):
    """Random ground truth and noisy detections: jittered hits, duplicates, wrong classes,
    false positives, images without objects, scores with ties (rounded)."""
    rng = np.random.default_rng(seed)
    classes_with_gt = list(range(num_classes)) if classes_with_gt is None else classes_with_gt
    ground_truth, detections = [], []
    for i in range(num_images):
        count = 0 if i % 7 == 3 else int(rng.integers(1, 6))
        xy = rng.uniform(0, 200, (count, 2))
        wh = rng.uniform(5, 80, (count, 2))
        gt_boxes = np.concatenate([xy, xy + wh], axis=1)
        gt_classes = rng.choice(classes_with_gt, count)
        boxes, scores, classes = [], [], []
        for box, cls in zip(gt_boxes, gt_classes, strict=True):
            for _ in range(int(rng.integers(0, 3))):  # 0: missed, 2: a duplicate
                jitter = rng.normal(0, 0.08, 4) * np.tile(box[2:] - box[:2], 2)
                boxes.append(box + jitter)
                classes.append(cls if rng.random() < 0.85 else rng.integers(num_classes))
                scores.append(rng.random())
        for _ in range(int(rng.integers(0, 4))):  # false positives anywhere
            xy = rng.uniform(0, 200, 2)
            boxes.append(np.concatenate([xy, xy + rng.uniform(5, 80, 2)]))
            classes.append(rng.integers(num_classes))
            scores.append(rng.random())
        scores = np.round(scores, 1)  # ties exercise COCO's stable ordering
        ground_truth.append({"boxes": gt_boxes, "classes": gt_classes})
        detections.append(
            {
                "boxes": np.reshape(boxes, (-1, 4)),
                "scores": np.asarray(scores, dtype=np.float64),
                "classes": np.asarray(classes, dtype=np.int64),
            }
        )
    return ground_truth, detections


def _xywh(box):
    return [float(box[0]), float(box[1]), float(box[2] - box[0]), float(box[3] - box[1])]


def _pycocotools(ground_truth, detections, num_classes, max_detections=100):
    """COCOeval built in memory; image ids from 1, category ids from 0 (kept)."""
    annotations = []
    for i, truth in enumerate(ground_truth):
        for box, cls in zip(truth["boxes"], truth["classes"], strict=True):
            xywh = _xywh(box)
            annotations.append(
                {
                    "id": len(annotations) + 1,  # COCOeval treats gt id 0 as "unmatched"
                    "image_id": i + 1,
                    "category_id": int(cls),
                    "bbox": xywh,
                    "area": xywh[2] * xywh[3],
                    "iscrowd": 0,
                }
            )
    results = [
        {"image_id": i + 1, "category_id": int(c), "bbox": _xywh(b), "score": float(s)}
        for i, found in enumerate(detections)
        for b, s, c in zip(found["boxes"], found["scores"], found["classes"], strict=True)
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = {
            "images": [{"id": i + 1} for i in range(len(ground_truth))],
            "annotations": annotations,
            "categories": [{"id": k} for k in range(num_classes)],
        }
        coco_gt.createIndex()
        coco_eval = COCOeval(coco_gt, coco_gt.loadRes(results), iouType="bbox")
        # COCOeval sorts maxDets and evaluates at the largest.
        coco_eval.params.maxDets = [1, min(10, max_detections), max_detections]
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    precision = coco_eval.eval["precision"][:, :, :, 0, -1]  # area all, largest maxDets
    return coco_eval.stats, np.where(precision < 0, np.nan, precision)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_pycocotools_on_random_detections(seed):
    ground_truth, detections = _random_split(seed)
    assert any(len(t["classes"]) == 0 for t in ground_truth)
    result = evaluate_detections(ground_truth, detections, CLASS_NAMES)
    stats, precision = _pycocotools(ground_truth, detections, len(CLASS_NAMES))
    assert result.mAP == pytest.approx(stats[0], abs=1e-6)
    assert result.mAP50 == pytest.approx(stats[1], abs=1e-6)
    np.testing.assert_allclose(result.precision, precision, atol=1e-9, equal_nan=True)
    assert result.ap50["zero"] > 0  # class 0 is evaluated, not dropped


def test_matches_pycocotools_with_max_detections_and_a_class_without_ground_truth():
    ground_truth, detections = _random_split(5, classes_with_gt=[0, 1])
    assert sum((d["classes"] == 2).sum() for d in detections) > 0
    result = evaluate_detections(ground_truth, detections, CLASS_NAMES, max_detections=2)
    uncapped = evaluate_detections(ground_truth, detections, CLASS_NAMES)
    assert (result.num_detections < uncapped.num_detections).any()  # the cap did bite
    stats, precision = _pycocotools(ground_truth, detections, 3, max_detections=2)
    # COCOeval.summarize reads mAP at maxDets=100 only (stats[0] is -1 here), so compare
    # with the mean of its precision array, which is what summarize computes.
    assert result.mAP == pytest.approx(np.nanmean(precision), abs=1e-6)
    assert result.mAP50 == pytest.approx(stats[1], abs=1e-6)
    np.testing.assert_allclose(result.precision, precision, atol=1e-9, equal_nan=True)
    # COCO leaves a class without ground truth out of the means.
    assert np.isnan(result.ap["two"]) and np.isnan(result.ap50["two"])
    assert result.mAP50 == pytest.approx((result.ap50["zero"] + result.ap50["one"]) / 2)
    assert "AP50/two" not in result.as_metrics()


def _one_image(gt_boxes, gt_classes, boxes, scores, classes):
    truth = {"boxes": gt_boxes, "classes": gt_classes}
    found = {"boxes": boxes, "scores": scores, "classes": classes}
    return [truth], [found]


def test_perfect_detections_score_one():
    boxes = [[0, 0, 10, 10], [20, 20, 40, 30], [5, 5, 15, 25]]
    result = evaluate_detections(
        *_one_image(boxes, [0, 1, 0], boxes, [0.9, 0.8, 0.7], [0, 1, 0]), ["a", "b"]
    )
    assert result.mAP == pytest.approx(1.0, abs=1e-12)
    assert result.mAP50 == pytest.approx(1.0, abs=1e-12)
    assert result.ap["a"] == pytest.approx(1.0, abs=1e-12)


def test_no_detections_score_zero():
    result = evaluate_detections(*_one_image([[0, 0, 10, 10]], [0], [], [], []), ["a"])
    assert result.mAP == 0.0 and result.mAP50 == 0.0
    assert result.num_detections.tolist() == [0]


def test_duplicate_detection_is_a_false_positive():
    gt = [[0, 0, 10, 10], [50, 50, 60, 60]]
    found = [[0, 0, 10, 10], [0, 0, 10, 10.5], [50, 50, 60, 60]]
    result = evaluate_detections(*_one_image(gt, [0, 0], found, [0.9, 0.8, 0.7], [0, 0, 0]), ["a"])
    # Ranked TP, FP, TP: precision 1 up to recall 0.5 (51 of COCO's 101 recall points),
    # then 2/3 up to recall 1 (50 points).
    assert result.mAP50 == pytest.approx((51 * 1 + 50 * 2 / 3) / 101, abs=1e-12)


def test_detection_below_threshold_and_wrong_class_do_not_match():
    gt = [[0, 0, 10, 10]]
    shifted = [[0, 0, 10, 16]]  # IoU 100/160 = 0.625: a hit at 0.5, 0.55, 0.6 only
    result = evaluate_detections(*_one_image(gt, [0], shifted, [0.9], [0]), ["a", "b"])
    assert result.ap_per_threshold[:, 0].round(6).tolist() == [1.0] * 3 + [0.0] * 7
    wrong = evaluate_detections(*_one_image(gt, [0], gt, [0.9], [1]), ["a", "b"])
    assert wrong.mAP50 == 0.0 and np.isnan(wrong.ap50["b"])


def test_equal_iou_goes_to_the_last_ground_truth_as_in_cocoeval():
    # The first detection overlaps both objects with IoU 0.6; COCOeval gives it the
    # last one (B), so the second detection, which only fits B, is a false positive.
    gt = np.array([[0, 0, 10, 10], [5, 0, 15, 10]], dtype=float)
    found = np.array([[2.5, 0, 12.5, 10], [5, 0, 15, 10]])
    truth, detections = _one_image(gt, [0, 0], found, [0.9, 0.8], [0, 0])
    result = evaluate_detections(truth, detections, ["a"])
    stats, _ = _pycocotools(truth, detections, 1)
    assert result.mAP50 == pytest.approx(51 / 101, abs=1e-12)
    assert result.mAP50 == pytest.approx(stats[1], abs=1e-12)


def test_ragged_tensors_are_accepted():
    tf = pytest.importorskip("tensorflow")
    y_true = {
        "boxes": tf.ragged.constant([[[0, 0, 10, 10]], []], ragged_rank=1, inner_shape=(4,)),
        "classes": tf.ragged.constant([[0], []], dtype=tf.float32),
    }
    y_pred = {
        "boxes": tf.ragged.constant(
            [[[0, 0, 10, 10]], [[1, 1, 5, 5]]], ragged_rank=1, inner_shape=(4,)
        ),
        "confidence": tf.ragged.constant([[0.9], [0.8]]),
        "classes": tf.ragged.constant([[0], [0]], dtype=tf.float32),
    }
    evaluator = DetectionEvaluator(["a"])
    evaluator.update_state(y_true, y_pred)
    result = evaluator.result()
    assert result.num_ground_truth.tolist() == [1] and result.num_detections.tolist() == [2]
    assert result.mAP50 == pytest.approx(1.0, abs=1e-12)  # the FP ranks below the only TP


def test_streaming_batches_equal_whole_split():
    ground_truth, detections = _random_split(3, num_images=8)
    expected = evaluate_detections(ground_truth, detections, CLASS_NAMES)

    def pad(arrays, width, fill=-1.0):
        out = np.full((len(arrays), width) + np.shape(arrays[0])[1:], fill)
        for i, a in enumerate(arrays):
            out[i, : len(a)] = a
        return out

    evaluator = DetectionEvaluator(CLASS_NAMES)
    for start in (0, 4):
        truth, found = ground_truth[start : start + 4], detections[start : start + 4]
        y_true = {
            "boxes": pad([np.reshape(t["boxes"], (-1, 4)) for t in truth], 6),
            "classes": pad([t["classes"] for t in truth], 6),
        }
        counts = np.array([len(f["scores"]) for f in found])
        y_pred = {
            # Rows past num_detections hold junk, as a fixed-size NMS output may.
            "boxes": pad([f["boxes"] for f in found], 20, fill=3.0),
            "confidence": pad([f["scores"] for f in found], 20, fill=0.5),
            "classes": pad([f["classes"] for f in found], 20, fill=0),
            "num_detections": counts,
        }
        evaluator.update_state(y_true, y_pred)
    result = evaluator.result()
    assert evaluator.num_images == 8
    np.testing.assert_allclose(result.precision, expected.precision, equal_nan=True)
    evaluator.reset_state()
    assert evaluator.num_images == 0 and evaluator.result().num_ground_truth.sum() == 0


def test_other_box_formats_give_the_same_result():
    ground_truth, detections = _random_split(4, num_images=6)
    expected = evaluate_detections(ground_truth, detections, CLASS_NAMES)

    def to_xywh(boxes):
        boxes = np.reshape(boxes, (-1, 4))
        return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)

    result = evaluate_detections(
        [{**t, "boxes": to_xywh(t["boxes"])} for t in ground_truth],
        [{**d, "boxes": to_xywh(d["boxes"])} for d in detections],
        CLASS_NAMES,
        bounding_box_format="xywh",
    )
    np.testing.assert_allclose(result.precision, expected.precision, atol=1e-9, equal_nan=True)


def test_bad_input_is_reported():
    with pytest.raises(ValueError, match=r"class ids in \[0, 2\).*\[2\]"):
        evaluate_detections(*_one_image([[0, 0, 1, 1]], [2], [], [], []), ["a", "b"])
    with pytest.raises(ValueError, match="one entry per box"):
        evaluate_detections(*_one_image([[0, 0, 1, 1]], [0], [[0, 0, 1, 1]], [], [0]), ["a"])
    with pytest.raises(ValueError, match="must contain 0.5"):
        DetectionEvaluator(["a"], iou_thresholds=[0.75])
    with pytest.raises(ValueError, match="one entry per image"):
        evaluate_detections([], [{"boxes": [], "scores": [], "classes": []}], ["a"])
    with pytest.raises(ValueError, match="shape"):
        evaluate_detections(*_one_image([[0, 0, 1]], [0], [], [], []), ["a"])
