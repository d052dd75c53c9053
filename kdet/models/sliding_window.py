"""Any region classifier turned into a detector: image pyramid + sliding windows + NMS.

The classic recipe (downscale the image by ``scale`` level after level, slide a
``window_size`` window by ``step`` pixels over each level, classify every window, keep
the confident ones, suppress overlaps) with the windows expressed in the original
image's pixels: a window of level ``k`` is cut straight from the original image and
resized to the classifier's input with ``crop_and_resize``, which is what resizing the
level and cutting the window would give, without building the pyramid images. All
windows of an image are classified in batches inside one TensorFlow graph. A classifier
with per-class box corrections (the paper R-CNN's ``box_delta``) moves each window by its
best class's correction, as the R-CNN detector moves its proposals
(:func:`kdet.models.rcnn.detector.regress_regions`). :func:`select_windows` picks the
window setting with the best mAP50 on held-out images from a grid of candidates.

Example:
    >>> import numpy as np
    >>> from kdet.models import get_model
    >>> classifier = get_model("rcnn_classifier", backbone="small_cnn", input_size=32)
    >>> detector = SlidingWindowDetector(classifier, window_size=(32, 32), step=16)
    >>> detector.windows((64, 96)).shape
    TensorShape([18, 4])
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Mapping, Sequence

import keras
import tensorflow as tf

from kdet.datasets.records import RecordSet
from kdet.models.rcnn.detector import (
    class_probabilities,
    region_outputs,
    regress_regions,
    select_detections,
)
from kdet.models.rcnn.evaluation import EvaluationReport, evaluate_detector

#: the options that place the windows (see :func:`pyramid_windows`)
WINDOW_KEYS = ("window_size", "step", "scale", "image_side")


def check_window_setting(setting: Mapping, where: str = "") -> None:
    """Raise ``ValueError`` naming the option (``where`` + key) of a bad window setting.

    Args:
        setting: some of :data:`WINDOW_KEYS` and their values.
        where: prefix of the option's name in the message (``"evaluate."``).

    Example:
        >>> check_window_setting({"step": 0}, "evaluate.")
        Traceback (most recent call last):
        ...
        ValueError: evaluate.step: 0 is not allowed: a whole number >= 1
    """
    rules = {
        "window_size": (
            lambda v: isinstance(v, list | tuple) and len(v) == 2 and all(_whole(s) for s in v),
            "[height, width], whole numbers >= 1",
        ),
        "step": (_whole, "a whole number >= 1"),
        "scale": (lambda v: _number(v) and v > 1, "a number > 1"),
        "image_side": (lambda v: v is None or _whole(v), "a whole number >= 1 or null"),
    }
    for key, value in setting.items():
        if key not in rules:
            raise ValueError(
                f"{where}{key}: unknown window option (allowed: {', '.join(WINDOW_KEYS)})"
            )
        valid, allowed = rules[key]
        if not valid(value):
            raise ValueError(f"{where}{key}: {value!r} is not allowed: {allowed}")


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


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
    check_window_setting(
        {"window_size": list(window_size), "step": step, "scale": scale, "image_side": image_side}
    )
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
        regress: move each window by the box correction of its best class, when the
            classifier predicts them (a ``box_delta`` output); ``False`` keeps the windows.
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
        regress: bool = True,
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
        self.regress = regress
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
        outputs = region_outputs(
            self.classifier, image, boxes, crop_size=self.crop_size, batch_size=self.batch_size
        )
        probs = class_probabilities(outputs, self.class_output)
        if self.background_class is not None:
            keep = [i for i in range(probs.shape[-1]) if i != self.background_class]
            probs = tf.gather(probs, keep, axis=1)
        if self.regress and "box_delta" in outputs:
            boxes = regress_regions(boxes, probs, outputs["box_delta"], tf.shape(image))
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


def window_candidates(grid: Mapping[str, Sequence]) -> list[dict]:
    """Every combination of the grid's values, in order (the last key varies fastest).

    Args:
        grid: ``{option: [value, ...]}`` for options of :data:`WINDOW_KEYS`.

    Example:
        >>> window_candidates({"window_size": [[64, 64]], "step": [8, 16]})
        [{'window_size': [64, 64], 'step': 8}, {'window_size': [64, 64], 'step': 16}]
    """
    for key, values in grid.items():
        if not isinstance(values, list | tuple) or not values:
            raise ValueError(f"window_grid.{key}: {values!r} is not allowed: a non-empty list")
        for value in values:
            check_window_setting({key: value}, "window_grid.")
    return [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]


@dataclasses.dataclass
class WindowSelection:
    """What :func:`select_windows` found.

    Attributes:
        setting: the chosen window setting (best mAP50; the first one on ties).
        report: the chosen setting's :class:`EvaluationReport` on the held-out images.
        candidates: ``[(setting, mAP50, seconds), ...]`` for every candidate, in order.
        seconds: wall time of the whole selection.
    """

    setting: dict
    report: EvaluationReport
    candidates: list
    seconds: float

    def as_metrics(self) -> dict:
        """The chosen setting, each candidate's mAP50 and seconds, for JSON and MLflow."""
        table = {
            setting_label(setting): {"mAP50": map50, "seconds": seconds}
            for setting, map50, seconds in self.candidates
        }
        chosen = dict(self.setting)
        height, width = chosen.pop("window_size", (None, None))
        chosen = {"window_height": height, "window_width": width, **chosen}
        return {
            "chosen": chosen,
            "validation_mAP50": self.report.result.mAP50,
            "candidates": table,
            "seconds": self.seconds,
        }


def setting_label(setting: Mapping) -> str:
    """A short name of a window setting (a metric name: no spaces, no slashes).

    Example:
        >>> setting_label({"window_size": [64, 48], "step": 16, "scale": 1.5, "image_side": 300})
        'window_64x48_step_16_scale_1.5_side_300'
    """
    parts = []
    for key, value in setting.items():
        if key == "window_size":
            parts.append(f"window_{value[0]}x{value[1]}")
        else:
            parts.append(f"{key.split('_')[-1]}_{value}")
    return "_".join(parts)


def select_windows(
    classifier: keras.Model,
    record_set: RecordSet,
    candidates: Sequence[Mapping],
    **detector_options,
) -> WindowSelection:
    """The window setting with the best mAP50 on ``record_set`` (held-out images).

    Args:
        classifier: the window classifier (see :class:`SlidingWindowDetector`).
        record_set: the images to choose on: validation images, never the test split.
        candidates: window settings (e.g. :func:`window_candidates` of a grid).
        **detector_options: the other :class:`SlidingWindowDetector` arguments.

    Returns:
        A :class:`WindowSelection`.

    Example:
        >>> held_out = records.split("train")  # doctest: +SKIP
        >>> grid = {"window_size": [[48, 48], [64, 64]], "step": [16]}
        >>> select_windows(classifier, held_out, window_candidates(grid)).setting
        ... # doctest: +SKIP
        {'window_size': [64, 64], 'step': 16}
    """
    if not candidates:
        raise ValueError("select_windows needs at least one candidate window setting")
    start = time.perf_counter()
    best, table = None, []
    for setting in candidates:
        began = time.perf_counter()
        detector = SlidingWindowDetector(classifier, **setting, **detector_options)
        report = evaluate_detector(detector, record_set)
        table.append((dict(setting), report.result.mAP50, time.perf_counter() - began))
        if best is None or report.result.mAP50 > best[1].result.mAP50:
            best = (dict(setting), report)
    return WindowSelection(best[0], best[1], table, time.perf_counter() - start)
