"""Per-image latency of an exported SavedModel, the same way for every family.

Every family reports ``latency_ms`` (median milliseconds of one ``detect_image`` call on
one image, after warm-up calls) and ``latency_p90_ms`` from here, so the numbers in
``dvc exp show`` and the MLflow compare view mean the same thing across families.
:func:`time_calls` is the one timing loop (also used by :func:`kdet.deploy.benchmark`):
several ways of doing the same thing are timed side by side, one call of each in turn, so a
load change on a shared machine hits them alike.

Example:
    >>> images = latency_images(RecordSet.load("data/raw/caltech101"))  # doctest: +SKIP
    >>> measure_latency("data/models/bbox_regressor/saved_model", images)  # doctest: +SKIP
    {'latency_ms': 3.1, 'latency_p90_ms': 3.6}
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable, Mapping, Sequence

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


def summarize(times_ms: Sequence[float]) -> dict[str, float]:
    """``{"latency_ms": median, "latency_p90_ms": 90th percentile}`` of call times (the
    percentile by nearest rank, so it is never below the median)."""
    ordered = sorted(times_ms)
    return {
        "latency_ms": statistics.median(ordered),
        "latency_p90_ms": ordered[math.ceil(0.9 * len(ordered)) - 1],
    }


def first_line(error: BaseException) -> str:
    """``"TypeName: first line of the message"``, the reason recorded for a failed way."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"


def time_calls(
    calls: Mapping[str, Callable[[int], object]],
    *,
    warmup: int = 3,
    repeats: int = 20,
    catch: bool = False,
) -> tuple[dict[str, dict[str, float]], dict[str, str]]:
    """Time several ways of doing one thing side by side, interleaved.

    Round ``i`` calls every way once with ``i`` (each way picks its input from it, e.g.
    image ``i % len(images)``); the order rotates each round. The first ``warmup`` rounds
    are not timed (tracing, compilation, allocations).

    Args:
        calls: ``{label: fn(i)}``; ``fn`` returns only when its result is computed.
        warmup: untimed rounds.
        repeats: timed rounds.
        catch: a way that raises is dropped from later rounds and the error's first line
            kept as its reason, instead of the error propagating.

    Returns:
        ``({label: summarize(ms)}, {label: reason})``.

    Example:
        >>> stats, failed = time_calls({"a": lambda i: i, "b": lambda i: 1 / 0}, catch=True)
        >>> sorted(stats), failed
        (['a'], {'b': 'ZeroDivisionError: division by zero'})
    """
    if repeats < 1:
        raise ValueError(f"need at least one timed call. Received: {repeats=}")
    labels = list(calls)
    if not labels:
        return {}, {}
    times = {label: [] for label in labels}
    reasons = {}
    for i in range(warmup + repeats):
        shift = i % len(labels)
        for label in labels[shift:] + labels[:shift]:
            if label in reasons:
                continue
            start = time.perf_counter()
            try:
                calls[label](i)
            except Exception as err:
                if not catch:
                    raise
                reasons[label] = first_line(err)
                continue
            if i >= warmup:
                times[label].append((time.perf_counter() - start) * 1000.0)
    return {label: summarize(t) for label, t in times.items() if label not in reasons}, reasons


def image_list(images, repeats) -> list[np.ndarray]:
    """``images`` (one ``(H, W, 3)`` array or several) as a list; at least one image and
    one timed call (``repeats``), else ``ValueError``."""
    if isinstance(images, np.ndarray) and images.ndim == 3:
        images = [images]
    if not len(images) or repeats < 1:
        raise ValueError(
            f"need at least one image and one timed call. Received: {len(images)} images, "
            f"{repeats=}"
        )
    return list(images)


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
    images = image_list(images, repeats)
    detect = tf.saved_model.load(str(saved_model_path)).signatures["detect_image"]
    tensors = [tf.constant(image, tf.uint8) for image in images]

    def call(i):
        return detect(image=tensors[i % len(tensors)])["num_detections"].numpy()

    stats, _ = time_calls({"detect_image": call}, warmup=warmup, repeats=repeats)
    return stats["detect_image"]
