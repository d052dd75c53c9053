"""COCO-style detection evaluation: mAP@0.5, mAP@[.5:.95], per-class AP and PR curves.

This re-implements the parts of ``pycocotools.cocoeval.COCOeval`` that kdet uses
(``iouType="bbox"``, area range "all", no crowd boxes, at most ``max_detections`` per
image and class, greedy matching by score, 101-point interpolated AP) and is checked
against pycocotools in the tests. It is hand-written because COCOeval needs the whole
split in COCO JSON form at once and KerasCV's ``PyCOCOCallback`` drops class 0
(keras-cv#2402); here every class id in ``[0, len(class_names))`` counts, and a class
with no ground truth in the split is left out of the means as COCO does.

Memory: each image is matched as soon as it is added, so the evaluator keeps only one
score and one true-positive flag per IoU threshold for each detection, never boxes.

Example:
    >>> ev = DetectionEvaluator(["raccoon"])
    >>> ev.add_image(gt_boxes=[[0, 0, 10, 10]], gt_classes=[0],
    ...              boxes=[[0, 0, 10, 10]], scores=[0.9], classes=[0])
    >>> result = ev.result()
    >>> round(result.mAP50, 6), round(result.mAP, 6)
    (1.0, 1.0)
"""

import dataclasses

import numpy as np

from kdet.metrics._boxes import pairwise_iou, to_corners

# COCOeval's defaults, built the way it builds them so thresholds match bit for bit.
COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1)
COCO_RECALL_THRESHOLDS = np.linspace(0.0, 1.0, int(np.round((1.0 - 0.0) / 0.01)) + 1)


@dataclasses.dataclass(frozen=True)
class DetectionResult:
    """What :meth:`DetectionEvaluator.result` returns.

    Attributes:
        class_names: one name per class id.
        iou_thresholds: ``(T,)`` IoU thresholds.
        recall_thresholds: ``(R,)`` recall points of the interpolated PR curve (COCO: 101).
        precision: ``(T, R, K)`` interpolated precision (COCO's ``eval["precision"]``
            for area "all" and the largest maxDets); NaN for classes without ground truth.
            Like COCO, precision is ``tp / (tp + fp + eps)``, so a perfect AP reads
            ``1 - 2e-16``, not exactly 1.
        num_ground_truth: ``(K,)`` ground-truth boxes per class.
        num_detections: ``(K,)`` detections per class that were evaluated.
    """

    class_names: tuple
    iou_thresholds: np.ndarray
    recall_thresholds: np.ndarray
    precision: np.ndarray
    num_ground_truth: np.ndarray
    num_detections: np.ndarray

    @property
    def _iou50(self):
        return int(np.flatnonzero(np.isclose(self.iou_thresholds, 0.5))[0])

    def _by_name(self, per_class):
        return dict(zip(self.class_names, np.asarray(per_class).tolist(), strict=True))

    @property
    def ap_per_threshold(self):
        """``(T, K)`` AP per IoU threshold and class (NaN: no ground truth)."""
        return self.precision.mean(axis=1)

    @property
    def ap(self):
        """AP@[thresholds] per class name (NaN when the class has no ground truth)."""
        return self._by_name(self.ap_per_threshold.mean(axis=0))

    @property
    def ap50(self):
        """AP@0.5 per class name (NaN when the class has no ground truth)."""
        return self._by_name(self.ap_per_threshold[self._iou50])

    @property
    def mAP(self):
        """Mean AP over all IoU thresholds and classes with ground truth (NaN if none)."""
        return _nanmean(self.ap_per_threshold)

    @property
    def mAP50(self):
        """Mean AP@0.5 over classes with ground truth (NaN if none)."""
        return _nanmean(self.ap_per_threshold[self._iou50])

    def pr_curve(self, class_name, iou_threshold=0.5):
        """The interpolated PR curve of one class: ``(recall, precision)`` arrays.

        Precision is 0 beyond the highest recall reached (COCO's convention), so the
        curve shows where recall stops. Raises ``KeyError`` for a class without ground
        truth or an IoU threshold that was not evaluated.
        """
        k = self.class_names.index(class_name)
        if self.num_ground_truth[k] == 0:
            raise KeyError(f"Class {class_name!r} has no ground truth: no PR curve")
        t = np.flatnonzero(np.isclose(self.iou_thresholds, iou_threshold))
        if t.size == 0:
            raise KeyError(f"IoU threshold {iou_threshold} was not evaluated")
        return self.recall_thresholds.copy(), self.precision[t[0], :, k].copy()

    @property
    def classes_with_ground_truth(self):
        """Names of the classes that count in the means (at least one true box)."""
        return [
            name
            for name, count in zip(self.class_names, self.num_ground_truth, strict=True)
            if count > 0
        ]

    @property
    def pr_curves(self):
        """``{class_name: (recall, precision)}`` at IoU 0.5 for classes with ground truth."""
        return {name: self.pr_curve(name) for name in self.classes_with_ground_truth}

    def as_metrics(self):
        """Flat ``{name: float}`` for a metrics JSON or MLflow; classes without ground
        truth (NaN) are left out so the JSON stays valid.

        Example:
            ``{"mAP50": 0.8, "mAP": 0.5, "AP50/raccoon": 0.8, "AP/raccoon": 0.5}``
        """
        metrics = {"mAP50": self.mAP50, "mAP": self.mAP}
        for name, value in self.ap50.items():
            metrics[f"AP50/{name}"] = value
        for name, value in self.ap.items():
            metrics[f"AP/{name}"] = value
        return {key: value for key, value in metrics.items() if not np.isnan(value)}


def _nanmean(values):
    values = np.asarray(values)
    return float("nan") if np.all(np.isnan(values)) else float(np.nanmean(values))


def _as_array(value):
    """NumPy view of a NumPy array, list or (ragged) TensorFlow tensor."""
    if hasattr(value, "to_tensor"):  # tf.RaggedTensor: pad like KerasCV's dense boxes
        value = value.to_tensor(default_value=-1)
    return np.asarray(value)


class DetectionEvaluator:
    """Streaming COCO-style evaluator: add images or batches, then read :meth:`result`.

    Args:
        class_names: sequence of class names; class ids are their indices (0 included).
        iou_thresholds: IoU thresholds; default COCO's 0.50:0.05:0.95. Must contain 0.5.
        max_detections: detections kept per image and class, highest scores first
            (COCO's maxDets, applied per category as COCOeval does).
        bounding_box_format: KerasCV format name of all boxes given. Relative formats
            work without image sizes because IoU is unchanged by per-axis scaling.

    Example:
        >>> ev = DetectionEvaluator(["a", "b"])
        >>> ev.add_image([[0, 0, 4, 4], [4, 4, 8, 8]], [1, 1],
        ...              boxes=[[0, 0, 4, 4], [0, 0, 4, 4], [4, 4, 8, 8]],
        ...              scores=[0.9, 0.8, 0.7], classes=[1, 1, 1])  # 2nd: duplicate
        >>> r = ev.result()
        >>> round(r.ap50["b"], 4), r.ap50["a"]  # "a" has no ground truth: left out
        (0.835, nan)
    """

    def __init__(
        self,
        class_names,
        iou_thresholds=None,
        max_detections=100,
        bounding_box_format="xyxy",
    ):
        self.class_names = tuple(class_names)
        if not self.class_names:
            raise ValueError("class_names must name at least one class. Received: []")
        thresholds = COCO_IOU_THRESHOLDS if iou_thresholds is None else iou_thresholds
        self.iou_thresholds = np.asarray(thresholds, dtype=np.float64).reshape(-1)
        if not np.any(np.isclose(self.iou_thresholds, 0.5)):
            raise ValueError(
                f"iou_thresholds must contain 0.5 for mAP50. Received: {self.iou_thresholds}"
            )
        if int(max_detections) < 1:
            raise ValueError(f"max_detections must be >= 1. Received: {max_detections}")
        self.max_detections = int(max_detections)
        self.bounding_box_format = bounding_box_format
        self.reset_state()

    def reset_state(self):
        """Forget every image added so far."""
        num_classes = len(self.class_names)
        self._num_ground_truth = np.zeros(num_classes, dtype=np.int64)
        self._scores = [[] for _ in range(num_classes)]
        self._true_positives = [[] for _ in range(num_classes)]
        self.num_images = 0

    def _class_ids(self, classes, name):
        classes = np.asarray(classes).reshape(-1)
        ids = classes.astype(np.int64)
        bad = (ids != classes) | (ids < 0) | (ids >= len(self.class_names))
        if np.any(bad):
            raise ValueError(
                f"{name} must be integer class ids in [0, {len(self.class_names)}). "
                f"Received: {classes[bad][:5].tolist()}"
            )
        return ids

    def add_image(self, gt_boxes, gt_classes, boxes, scores, classes):
        """Match one image's detections to its ground truth and keep the outcome.

        Args:
            gt_boxes: ``(G, 4)`` ground-truth boxes (``G`` may be 0).
            gt_classes: ``(G,)`` class ids.
            boxes: ``(D, 4)`` detected boxes (``D`` may be 0).
            scores: ``(D,)`` confidences.
            classes: ``(D,)`` class ids.
        """
        gt_boxes = to_corners(np.reshape(gt_boxes, (-1, 4)), self.bounding_box_format)
        boxes = to_corners(np.reshape(boxes, (-1, 4)), self.bounding_box_format)
        gt_classes = self._class_ids(gt_classes, "gt_classes")
        classes = self._class_ids(classes, "classes")
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        if len(gt_classes) != len(gt_boxes) or not len(boxes) == len(scores) == len(classes):
            raise ValueError(
                "Boxes, scores and classes must have one entry per box. Received: "
                f"{len(gt_boxes)} gt_boxes, {len(gt_classes)} gt_classes, {len(boxes)} boxes, "
                f"{len(scores)} scores, {len(classes)} classes"
            )
        self._num_ground_truth += np.bincount(gt_classes, minlength=len(self.class_names))
        for k in np.unique(classes):
            in_class = np.flatnonzero(classes == k)
            # COCOeval: stable sort by descending score, keep the first max_detections.
            order = in_class[np.argsort(-scores[in_class], kind="mergesort")]
            order = order[: self.max_detections]
            true_positive = self._match(boxes[order], gt_boxes[gt_classes == k])
            self._scores[k].append(scores[order])
            self._true_positives[k].append(true_positive)
        self.num_images += 1

    def _match(self, boxes, gt_boxes):
        """Greedy matching as in COCOeval.evaluateImg; returns ``(T, D)`` bool.

        Detections are visited by descending score; each takes, at every threshold at
        once, the still unmatched ground truth with the highest IoU >= the threshold
        (on equal IoU the last one, as COCOeval does).
        """
        num_thresholds = len(self.iou_thresholds)
        true_positive = np.zeros((num_thresholds, len(boxes)), dtype=bool)
        if len(gt_boxes) == 0:
            return true_positive
        ious = pairwise_iou(boxes, gt_boxes)
        thresholds = np.minimum(self.iou_thresholds, 1 - 1e-10)[:, None]
        gt_taken = np.zeros((num_thresholds, len(gt_boxes)), dtype=bool)
        rows = np.arange(num_thresholds)
        for d, iou in enumerate(ious):
            candidates = np.where((iou[None, :] >= thresholds) & ~gt_taken, iou[None, :], -1.0)
            last_best = len(gt_boxes) - 1 - np.argmax(candidates[:, ::-1], axis=1)
            found = candidates[rows, last_best] >= 0
            gt_taken[rows[found], last_best[found]] = True
            true_positive[:, d] = found
        return true_positive

    def update_state(self, y_true, y_pred):
        """Add a batch in KerasCV's dense convention (padding has class -1).

        Args:
            y_true: ``{"boxes": (B, N, 4), "classes": (B, N)}``.
            y_pred: ``{"boxes": (B, M, 4), "confidence": (B, M), "classes": (B, M)}``
                and optionally ``"num_detections": (B,)``, as a KerasCV detector's
                ``predict`` returns.
        """
        gt_boxes, gt_classes = _as_array(y_true["boxes"]), _as_array(y_true["classes"])
        boxes, classes = _as_array(y_pred["boxes"]), _as_array(y_pred["classes"])
        scores = _as_array(y_pred["confidence"])
        counts = y_pred.get("num_detections")
        counts = np.full(len(boxes), boxes.shape[1]) if counts is None else _as_array(counts)
        for i in range(len(gt_boxes)):
            gt_keep = gt_classes[i] >= 0
            keep = np.flatnonzero(classes[i, : int(counts[i])] >= 0)
            self.add_image(
                gt_boxes[i][gt_keep],
                gt_classes[i][gt_keep],
                boxes[i][keep],
                scores[i][keep],
                classes[i][keep],
            )

    def result(self):
        """COCO's accumulate step over every image added so far.

        Returns:
            :class:`DetectionResult`.
        """
        num_thresholds, num_classes = len(self.iou_thresholds), len(self.class_names)
        recall_points = COCO_RECALL_THRESHOLDS
        precision = np.full((num_thresholds, len(recall_points), num_classes), np.nan)
        num_detections = np.zeros(num_classes, dtype=np.int64)
        for k in range(num_classes):
            scores = np.concatenate(self._scores[k] or [np.zeros(0)])
            num_detections[k] = len(scores)
            if self._num_ground_truth[k] == 0:
                continue  # COCO: precision -1, left out of every mean
            order = np.argsort(-scores, kind="mergesort")
            hits = np.concatenate(
                self._true_positives[k] or [np.zeros((num_thresholds, 0), bool)], axis=1
            )[:, order]
            tp = np.cumsum(hits, axis=1, dtype=np.float64)
            fp = np.cumsum(~hits, axis=1, dtype=np.float64)
            recall = tp / self._num_ground_truth[k]
            prec = tp / (tp + fp + np.spacing(1))
            # Make precision non-increasing from the right (the interpolation envelope).
            prec = np.maximum.accumulate(prec[:, ::-1], axis=1)[:, ::-1]
            precision[:, :, k] = 0.0
            for t in range(num_thresholds):
                index = np.searchsorted(recall[t], recall_points, side="left")
                reached = index < len(scores)
                precision[t, reached, k] = prec[t, index[reached]]
        return DetectionResult(
            class_names=self.class_names,
            iou_thresholds=self.iou_thresholds.copy(),
            recall_thresholds=recall_points.copy(),
            precision=precision,
            num_ground_truth=self._num_ground_truth.copy(),
            num_detections=num_detections,
        )


def evaluate_detections(
    ground_truth,
    detections,
    class_names,
    iou_thresholds=None,
    max_detections=100,
    bounding_box_format="xyxy",
):
    """Evaluate whole lists of images at once (see :class:`DetectionEvaluator`).

    Args:
        ground_truth: one dict per image, ``{"boxes": (G, 4), "classes": (G,)}``.
        detections: one dict per image, same order,
            ``{"boxes": (D, 4), "scores": (D,), "classes": (D,)}``.
        class_names: class names; ids are their indices.
        iou_thresholds: default COCO's 0.50:0.05:0.95.
        max_detections: per image and class, as COCO's maxDets.
        bounding_box_format: KerasCV format name of every box.

    Returns:
        :class:`DetectionResult` (``.mAP50``, ``.mAP``, ``.ap50``, ``.ap``, ``.pr_curves``).

    Example:
        >>> gt = [{"boxes": [[0, 0, 8, 8]], "classes": [0]}, {"boxes": [], "classes": []}]
        >>> dt = [{"boxes": [[0, 0, 8, 8]], "scores": [0.7], "classes": [0]},
        ...       {"boxes": [], "scores": [], "classes": []}]
        >>> round(evaluate_detections(gt, dt, ["cat"]).mAP, 6)
        1.0
    """
    if len(ground_truth) != len(detections):
        raise ValueError(
            "ground_truth and detections need one entry per image. Received: "
            f"{len(ground_truth)} and {len(detections)}"
        )
    evaluator = DetectionEvaluator(class_names, iou_thresholds, max_detections, bounding_box_format)
    for truth, found in zip(ground_truth, detections, strict=True):
        evaluator.add_image(
            truth["boxes"], truth["classes"], found["boxes"], found["scores"], found["classes"]
        )
    return evaluator.result()
