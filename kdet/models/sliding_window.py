"""Any region classifier turned into a detector: image pyramid + sliding windows + NMS.

The classic recipe (downscale the image by ``scale`` level after level, slide a
``window_size`` window by ``step`` pixels over each level, classify every window, keep
the confident ones, suppress overlaps) with the windows expressed in the original
image's pixels: a window of level ``k`` is cut straight from the original image and
resized to the classifier's input with ``crop_and_resize``, which is what resizing the
level and cutting the window would give, without building the pyramid images. All
windows of an image are classified in batches inside one TensorFlow graph.

Example:
    >>> import numpy as np
    >>> from kdet.models import get_model
    >>> classifier = get_model("rcnn_classifier", backbone="small_cnn", input_size=32)
    >>> detector = SlidingWindowDetector(classifier, window_size=(32, 32), step=16)
    >>> detector.windows((64, 96)).shape
    TensorShape([18, 4])
"""

from __future__ import annotations

import keras
import tensorflow as tf

from kdet.models.rcnn.detector import classify_regions, select_detections


def pyramid_windows(
    image_shape,
    *,
    window_size=(64, 64),
    step: int = 16,
    scale: float = 1.5,
    image_side: int | None = None,
) -> tf.Tensor:
    """Every sliding window of every pyramid level, as xyxy boxes in the image's pixels.

    Args:
        image_shape: ``(height, width, ...)`` of the image.
        window_size: ``(height, width)`` of the window in a level's pixels.
        step: stride of the window in a level's pixels.
        scale: downscaling factor from one level to the next (> 1).
        image_side: first resize the image so its longest side is this many pixels (the
            tutorial works at width 600); ``None`` starts at full size.

    Returns:
        float32 ``(N, 4)``; a level is used while the window still fits in it.
    """
    if scale <= 1:
        raise ValueError(f"scale must be > 1. Received: {scale=}")
    if step < 1:
        raise ValueError(f"step must be >= 1. Received: {step=}")
    window_h, window_w = (float(v) for v in window_size)
    height = tf.cast(image_shape[0], tf.float32)
    width = tf.cast(image_shape[1], tf.float32)
    base = tf.constant(1.0)
    if image_side is not None:
        base = tf.maximum(height, width) / float(image_side)
    fit = tf.minimum(height / base / window_h, width / base / window_w)
    num_levels = tf.cast(
        tf.floor(tf.math.log(tf.maximum(fit, 1e-6)) / tf.math.log(scale)), tf.int32
    )
    num_levels = tf.where(fit >= 1.0, num_levels + 1, 0)
    levels = tf.TensorArray(
        tf.float32, size=0, dynamic_size=True, infer_shape=False, element_shape=[None, 4]
    )
    levels = levels.write(0, tf.zeros((0, 4)))  # so an image smaller than a window concats
    for level in tf.range(num_levels):
        factor = base * tf.pow(scale, tf.cast(level, tf.float32))
        level_h, level_w = height / factor, width / factor
        ys = tf.range(tf.floor((level_h - window_h) / step) + 1.0) * step
        xs = tf.range(tf.floor((level_w - window_w) / step) + 1.0) * step
        y, x = tf.meshgrid(ys, xs, indexing="ij")
        x, y = tf.reshape(x, [-1]), tf.reshape(y, [-1])
        boxes = tf.stack([x, y, x + window_w, y + window_h], axis=-1) * factor
        levels = levels.write(level + 1, boxes)
    return levels.concat()


class SlidingWindowDetector:
    """Detect objects by classifying pyramid windows with any region classifier.

    Args:
        classifier: crops ``(B, s, s, 3)`` in ``0..255`` -> class probabilities, e.g. the
            R-CNN classifier (``get_model("rcnn_classifier", ...)``) or any registered
            model with a softmax class output (pick it with ``class_output``).
        window_size, step, scale, image_side: see :func:`pyramid_windows`.
        crop_size: classifier input side; default: the classifier's.
        background_class: index of the background probability (dropped from the
            scores); ``None`` when every output is an object class.
        class_output: name of the class output of a multi-output classifier.
        score_threshold, iou_threshold, max_detections: as for the R-CNN detector.
        batch_size: windows classified at once.
    """

    def __init__(
        self,
        classifier: keras.Model,
        *,
        window_size=(64, 64),
        step: int = 16,
        scale: float = 1.5,
        image_side: int | None = None,
        crop_size: int | None = None,
        background_class: int | None = 0,
        class_output: str | None = None,
        score_threshold: float = 0.5,
        iou_threshold: float = 0.3,
        max_detections: int = 20,
        batch_size: int | None = 256,
    ):
        self.classifier = classifier
        input_shape = classifier.input_shape
        if isinstance(input_shape, dict):
            raise ValueError("The sliding-window detector needs a single-input classifier")
        self.crop_size = crop_size or int(input_shape[1])
        self.window_options = {
            "window_size": tuple(window_size),
            "step": step,
            "scale": scale,
            "image_side": image_side,
        }
        self.background_class = background_class
        self.class_output = class_output
        self.score_threshold = score_threshold
        self.iou_threshold = iou_threshold
        self.max_detections = max_detections
        self.batch_size = batch_size
        self.detect = tf.function(
            self.detect_eager, input_signature=[tf.TensorSpec([None, None, 3], tf.uint8)]
        )

    def windows(self, image_shape) -> tf.Tensor:
        """The windows this detector classifies for an image of ``image_shape``."""
        return pyramid_windows(image_shape, **self.window_options)

    def detect_eager(self, image: tf.Tensor) -> dict[str, tf.Tensor]:
        """Detections for one ``uint8 (H, W, 3)`` image.

        Returns ``{"boxes": (M, 4) xyxy pixels, "scores": (M,), "classes": (M,) int32}``;
        class ids count object classes only (the background column removed).
        """
        boxes = self.windows(tf.shape(image))
        probs = classify_regions(
            self.classifier,
            image,
            boxes,
            crop_size=self.crop_size,
            batch_size=self.batch_size,
            class_output=self.class_output,
        )
        if self.background_class is not None:
            keep = [i for i in range(probs.shape[-1]) if i != self.background_class]
            probs = tf.gather(probs, keep, axis=1)
        return select_detections(
            boxes,
            probs,
            score_threshold=self.score_threshold,
            iou_threshold=self.iou_threshold,
            max_detections=self.max_detections,
        )

    def __call__(self, image) -> dict[str, tf.Tensor]:
        """Run the compiled :meth:`detect` on an array-like image."""
        return self.detect(tf.convert_to_tensor(image, tf.uint8))
