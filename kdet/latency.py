"""Per-image latency of an exported SavedModel, the same way for every family.

Every family reports ``latency_ms`` (median milliseconds of one ``detect_image`` call on
one image, after warm-up calls) and ``latency_p90_ms`` from here, so the numbers in
``dvc exp show`` and the MLflow compare view mean the same thing across families.

Example:
    >>> images = latency_images(RecordSet.load("data/raw/caltech101"))  # doctest: +SKIP
    >>> measure_latency("data/models/bbox_regressor/saved_model", images)  # doctest: +SKIP
    {'latency_ms': 3.1, 'latency_p90_ms': 3.6}
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from kdet.data.decode import read_image
from kdet.datasets.records import RecordSet

LATENCY_IMAGES = 10  # test images, at their own sizes, timed in turn


def latency_images(
    record_set: RecordSet, count: int = LATENCY_IMAGES, class_names: Sequence[str] | None = None
) -> list[np.ndarray]:
    """Up to ``count`` test-split images (of ``class_names``, default all) as ``uint8
    (H, W, 3)`` arrays at their own sizes, decoded as the input pipeline decodes them."""
    test = record_set.split("test")
    wanted = set(class_names or test.class_names)
    chosen = [r for r in test.records if r.classes and test.class_names[r.classes[0]] in wanted][
        :count
    ]
    return [read_image(str(test.image_path(r))).numpy() for r in chosen]


def measure_latency(
    saved_model_path: str | os.PathLike,
    images: np.ndarray | Sequence[np.ndarray],
    *,
    warmup: int = 3,
    repeats: int = 20,
) -> dict[str, float]:
    """Median and 90th-percentile milliseconds of the SavedModel's ``detect_image`` call.

    Args:
        saved_model_path: a SavedModel with kdet's serving contract (:mod:`kdet.export`).
        images: one ``uint8 (H, W, 3)`` image or a sequence of them (any sizes); call
            ``i`` sends image ``i % len(images)``, so a few test images are timed in turn.
        warmup: untimed calls first (tracing, allocations).
        repeats: timed calls.

    Returns:
        ``{"latency_ms": median, "latency_p90_ms": 90th percentile}``.
    """
    if isinstance(images, np.ndarray) and images.ndim == 3:
        images = [images]
    if not len(images) or repeats < 1:
        raise ValueError(
            f"need at least one image and one timed call. Received: {len(images)} images, "
            f"{repeats=}"
        )
    detect = tf.saved_model.load(str(saved_model_path)).signatures["detect_image"]
    tensors = [tf.constant(image, tf.uint8) for image in images]
    for i in range(warmup):
        detect(image=tensors[i % len(tensors)])
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        detect(image=tensors[i % len(tensors)])["num_detections"].numpy()
        times.append((time.perf_counter() - start) * 1000.0)
    times.sort()
    return {
        "latency_ms": statistics.median(times),
        "latency_p90_ms": times[int(0.9 * (len(times) - 1))],
    }
