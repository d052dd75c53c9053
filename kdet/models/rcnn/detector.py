"""The R-CNN detector: proposals in, boxes out, every crop of an image in one batch.

Selective search runs outside the graph (OpenCV, :mod:`kdet.models.rcnn.proposals`);
everything after it runs in TensorFlow: the proposals are cropped and resized with
``tf.image.crop_and_resize`` (no Python loop per crop), classified in one batch, moved
by the classifier's box regression of their best class (when it has one), thresholded
and suppressed class by class.

Example:
    >>> import numpy as np
    >>> from kdet.models.rcnn.classifier import build_rcnn_classifier
    >>> detector = RCNNDetector(
    ...     build_rcnn_classifier(backbone="small_cnn", input_size=32), score_threshold=0.0
    ... )
    >>> out = detector(np.zeros((48, 64, 3), np.uint8), np.array([[0, 0, 20, 20.0]]))
    >>> sorted(out)
    ['boxes', 'classes', 'scores']
"""

from __future__ import annotations

import keras
import tensorflow as tf

from kdet.bounding_box import non_max_suppression
from kdet.models.rcnn.box_coder import decode_box_deltas


def normalised_crop_boxes(boxes: tf.Tensor, image_shape: tf.Tensor) -> tf.Tensor:
    """xyxy pixel boxes -> ``crop_and_resize``'s normalised ``[y1, x1, y2, x2]``.

    A box covers pixels ``x1 .. x2 - 1`` (as ``image[y1:y2, x1:x2]`` does), and
    ``crop_and_resize`` maps normalised ``v`` to pixel ``v * (size - 1)``.
    """
    boxes = tf.cast(boxes, tf.float32)
    height = tf.cast(image_shape[0], tf.float32) - 1.0
    width = tf.cast(image_shape[1], tf.float32) - 1.0
    x1, y1, x2, y2 = tf.unstack(boxes, axis=-1)
    scale = tf.stack([height, width, height, width])
    return tf.stack([y1, x1, y2 - 1.0, x2 - 1.0], axis=-1) / tf.maximum(scale, 1.0)


def crop_regions(image: tf.Tensor, boxes: tf.Tensor, crop_size: int) -> tf.Tensor:
    """Crop ``boxes`` (xyxy pixels) out of one image and resize them, in one op.

    Returns:
        float32 ``(N, crop_size, crop_size, 3)`` pixels in the image's range.
    """
    image = tf.convert_to_tensor(image)
    boxes = tf.reshape(tf.convert_to_tensor(boxes, tf.float32), (-1, 4))
    return tf.image.crop_and_resize(
        tf.cast(image, tf.float32)[tf.newaxis],
        normalised_crop_boxes(boxes, tf.shape(image)),
        tf.zeros(tf.shape(boxes)[:1], tf.int32),
        (crop_size, crop_size),
    )


def region_outputs(
    classifier: keras.Model,
    image: tf.Tensor,
    boxes: tf.Tensor,
    *,
    crop_size: int,
    batch_size: int | None = None,
) -> dict[str, tf.Tensor]:
    """Every output of ``classifier`` for every region of one image, float32.

    Args:
        classifier: crops ``(B, s, s, 3)`` in ``0..255`` -> class probabilities, or a dict
            of outputs (e.g. ``{"class_label", "box_delta"}``).
        image: ``(H, W, 3)`` image.
        boxes: ``(N, 4)`` xyxy pixels.
        crop_size: the classifier's input side.
        batch_size: classify at most this many crops at once (bounds memory for
            thousands of windows); ``None`` classifies all of them in one batch.

    Returns:
        The classifier's outputs for the ``N`` regions, as a dict; a single-output
        classifier's output is named ``"class_label"``.
    """

    def run(crops):
        out = classifier(crops, training=False)
        out = out if isinstance(out, dict) else {"class_label": out}
        return {name: tf.cast(value, tf.float32) for name, value in out.items()}

    boxes = tf.reshape(tf.convert_to_tensor(boxes, tf.float32), (-1, 4))
    if batch_size is None:
        return run(crop_regions(image, boxes, crop_size))
    shapes = classifier.output
    shapes = (
        {n: t.shape for n, t in shapes.items()}
        if isinstance(shapes, dict)
        else {"class_label": shapes.shape}
    )
    arrays = {
        name: tf.TensorArray(
            tf.float32,
            size=0,
            dynamic_size=True,
            infer_shape=False,
            element_shape=tf.TensorShape([None, *shape[1:]]),
        )
        for name, shape in shapes.items()
    }
    for start in tf.range(0, tf.shape(boxes)[0], batch_size):
        out = run(crop_regions(image, boxes[start : start + batch_size], crop_size))
        arrays = {
            name: array.write(start // batch_size, out[name]) for name, array in arrays.items()
        }
    return {name: array.concat() for name, array in arrays.items()}


def class_probabilities(outputs: dict[str, tf.Tensor], class_output: str | None = None):
    """The class probabilities among :func:`region_outputs`' ``outputs``: the only output,
    or the one named ``class_output`` (default ``"class_label"``).

    Example:
        >>> class_probabilities({"class_label": [[0.2, 0.8]], "box_delta": [[[0, 0, 0, 0]]]})
        [[0.2, 0.8]]
    """
    if len(outputs) == 1:
        return next(iter(outputs.values()))
    return outputs[class_output or "class_label"]


def regress_regions(
    boxes: tf.Tensor, class_scores: tf.Tensor, box_deltas: tf.Tensor, image_shape
) -> tf.Tensor:
    """Move each region by the box correction of its best class, clipped to the image.

    Args:
        boxes: ``(N, 4)`` xyxy regions (proposals, windows).
        class_scores: ``(N, C)`` object-class scores (no background column).
        box_deltas: ``(N, C, 4)`` per-class corrections
            (:func:`kdet.models.rcnn.box_coder.encode_box_deltas`).
        image_shape: ``(height, width, ...)`` of the image.

    Returns:
        float32 ``(N, 4)`` xyxy boxes.

    Example:
        >>> boxes = regress_regions([[10, 10, 50, 50.0]], [[0.9]], [[[0.5, 0, 0, 0]]], (64, 64))
        >>> boxes.numpy().tolist()
        [[12.0, 10.0, 52.0, 50.0]]
    """
    boxes = tf.reshape(tf.cast(boxes, tf.float32), (-1, 4))
    best = tf.argmax(class_scores, axis=-1, output_type=tf.int32)
    deltas = tf.gather(tf.cast(box_deltas, tf.float32), best, batch_dims=1)
    shape = tf.cast(image_shape, tf.float32)
    size = tf.stack([shape[1], shape[0], shape[1], shape[0]])
    return tf.clip_by_value(decode_box_deltas(boxes, deltas), 0.0, size)


def select_detections(
    boxes: tf.Tensor,
    class_scores: tf.Tensor,
    *,
    score_threshold: float,
    iou_threshold: float,
    max_detections: int,
) -> dict[str, tf.Tensor]:
    """Label each region with its best class, threshold, then class-wise NMS.

    Args:
        boxes: ``(N, 4)`` xyxy boxes, one per region.
        class_scores: ``(N, C)`` score of each region for each object class (no
            background column).
        score_threshold: regions whose best score is not above this are dropped.
        iou_threshold, max_detections: see :func:`kdet.bounding_box.non_max_suppression`.

    Returns:
        ``{"boxes": (M, 4), "scores": (M,), "classes": (M,) int32}``, best first.
    """
    boxes = tf.reshape(tf.cast(boxes, tf.float32), (-1, 4))
    class_scores = tf.cast(class_scores, tf.float32)
    kept = non_max_suppression(
        boxes,
        tf.reduce_max(class_scores, axis=-1),
        tf.argmax(class_scores, axis=-1, output_type=tf.int32),
        bounding_box_format="xyxy",
        iou_threshold=iou_threshold,
        score_threshold=score_threshold,
        max_detections=max_detections,
    )
    count = kept["num_detections"]
    return {
        "boxes": kept["boxes"][:count],
        "scores": kept["confidence"][:count],
        "classes": kept["classes"][:count],
    }


class RCNNDetector:
    """Classify every proposal of an image and keep the confident, non-overlapping ones.

    Selective search is not part of this detector: pass each image's proposals (see
    :func:`kdet.models.rcnn.proposals.selective_search`).

    Args:
        classifier: a region classifier, e.g. ``get_model("rcnn_classifier", ...)``:
            crops in ``0..255`` -> probabilities with background at index 0, or
            ``{"class_label": ..., "box_delta": (B, C, 4)}`` with per-class box
            corrections (``box_regression=True``).
        crop_size: crop side; default: the classifier's input side.
        score_threshold: minimum class probability of a detection.
        iou_threshold: class-wise NMS overlap above which the weaker box is dropped.
        max_detections: most detections per image.
        max_proposals: use only the first proposals; ``None`` uses all.
        batch_size: see :func:`region_outputs`.
        regress: move each proposal by the box correction of its best class, when the
            classifier predicts them (``False`` keeps the proposals).
    """

    def __init__(
        self,
        classifier: keras.Model,
        *,
        crop_size: int | None = None,
        score_threshold: float = 0.5,
        iou_threshold: float = 0.3,
        max_detections: int = 20,
        max_proposals: int | None = None,
        batch_size: int | None = None,
        regress: bool = True,
    ):
        self.classifier = classifier
        self.crop_size = crop_size or int(classifier.input_shape[1])
        self.score_threshold = score_threshold
        self.iou_threshold = iou_threshold
        self.max_detections = max_detections
        self.max_proposals = max_proposals
        self.batch_size = batch_size
        self.regress = regress
        self.detect = tf.function(
            self.detect_eager,
            input_signature=[
                tf.TensorSpec([None, None, 3], tf.uint8),
                tf.TensorSpec([None, 4], tf.float32),
            ],
        )

    def detect_eager(self, image: tf.Tensor, proposals: tf.Tensor) -> dict[str, tf.Tensor]:
        """Detections for one ``uint8 (H, W, 3)`` image and its ``(N, 4)`` xyxy proposals.

        Returns ``{"boxes": (M, 4) xyxy pixels, "scores": (M,), "classes": (M,) int32}``.
        """
        proposals = tf.reshape(tf.cast(proposals, tf.float32), (-1, 4))
        if self.max_proposals is not None:
            proposals = proposals[: self.max_proposals]
        outputs = region_outputs(
            self.classifier,
            image,
            proposals,
            crop_size=self.crop_size,
            batch_size=self.batch_size,
        )
        scores = outputs["class_label"][:, 1:]
        boxes = proposals
        if self.regress and "box_delta" in outputs:
            boxes = regress_regions(proposals, scores, outputs["box_delta"], tf.shape(image))
        return select_detections(
            boxes,
            scores,
            score_threshold=self.score_threshold,
            iou_threshold=self.iou_threshold,
            max_detections=self.max_detections,
        )

    def __call__(self, image, proposals) -> dict[str, tf.Tensor]:
        """Run the compiled :meth:`detect` on array-likes."""
        return self.detect(
            tf.convert_to_tensor(image, tf.uint8), tf.convert_to_tensor(proposals, tf.float32)
        )
