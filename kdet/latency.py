"""Per-image latency of an exported SavedModel, the same way for every family.

Every family reports ``latency_ms`` (median milliseconds of one ``detect_image`` call on
one image, after warm-up calls) and ``latency_p90_ms`` from here, so the numbers in
``dvc exp show`` and the MLflow compare view mean the same thing across families.
:func:`time_calls` is the one timing loop (also used by :func:`kdet.deploy.benchmark`):
several ways of doing the same thing are timed side by side, one call of each in turn, so a
load change on a shared machine hits them alike. :func:`benchmark_saved_model` compares one
SavedModel plain, XLA-compiled, under concurrent calls and as ONNX / LiteRT artifacts.

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
from concurrent.futures import ThreadPoolExecutor

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


def _check_images(images, repeats) -> list[np.ndarray]:
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
    images = _check_images(images, repeats)
    detect = tf.saved_model.load(str(saved_model_path)).signatures["detect_image"]
    tensors = [tf.constant(image, tf.uint8) for image in images]

    def call(i):
        return detect(image=tensors[i % len(tensors)])["num_detections"].numpy()

    stats, _ = time_calls({"detect_image": call}, warmup=warmup, repeats=repeats)
    return stats["detect_image"]


def benchmark_saved_model(
    saved_model_path: str | os.PathLike,
    images: Sequence[np.ndarray],
    *,
    artifacts: Mapping[str, str | os.PathLike] | None = None,
    concurrency: int = 8,
    warmup: int = 3,
    repeats: int = 20,
    rounds: int = 5,
    num_threads: int | None = None,
) -> dict:
    """Batch-1 latency, throughput under concurrent calls and XLA of one serving SavedModel.

    All ways are timed in one :func:`time_calls` loop, interleaved, on ``images`` in turn:

    * ``saved_model``: the ``detect_image`` signature, one image per call. Proposal-taking
      families (R-CNN, Fast R-CNN) get each image's selective-search proposals, computed
      once beforehand (with the settings :class:`kdet.deploy.Runtime` uses): the time is the
      detector's alone, and the search's median per image is reported beside it.
    * ``xla``: the same signature wrapped in ``tf.function(jit_compile=True)``; when XLA
      cannot compile it, the error's first line is its ``reason``.
    * ``onnx`` / ``litert`` (``artifacts``): :class:`kdet.deploy.Runtime` calls with
      ``num_threads`` intra-op threads, caller-side resize and NMS included.

    "Batched" throughput: the serving contract takes one image per call (images keep their
    own sizes), so a deployment batches by keeping several requests in flight, as a server
    with several workers does. Rounds of ``concurrency`` images sent one after the other
    (``sequential``) and from ``concurrency`` threads at once (``concurrent``) are timed
    interleaved, for the plain and the XLA signature; images/s = images per round / median
    round time.

    Args:
        saved_model_path: a SavedModel with kdet's serving contract (:mod:`kdet.export`).
        images: ``uint8 (H, W, 3)`` images of any sizes.
        artifacts: ``{"onnx": path, "litert": path}`` exports of the same model.
        concurrency: images per throughput round and threads of its concurrent way.
        warmup: untimed calls first, at least one per image (XLA compiles for each image
            size); throughput gets ``warmup // concurrency`` untimed rounds, at least one.
        repeats: timed calls.
        rounds: timed throughput rounds (of ``concurrency`` images each).
        num_threads: ONNX Runtime / LiteRT intra-op threads (TensorFlow's are process-wide).

    Returns:
        ``{"proposals": bool, "proposal_search_ms": median or None, "formats": {way:
        {"latency_ms", "latency_p90_ms"} or {"reason"}}, "xla_ratio": XLA / plain median
        or None, "throughput": {"sequential"|"concurrent"|"xla sequential"|"xla concurrent":
        images/s}, "throughput_reasons": {way: reason}}``.

    Example:
        >>> result = benchmark_saved_model("saved_model", images)  # doctest: +SKIP
        >>> result["formats"]["xla"]  # doctest: +SKIP
        {'reason': 'InvalidArgumentError: Detected unsupported operations ...'}
    """
    from kdet.deploy import Runtime

    images = _check_images(images, repeats)
    warmup = max(warmup, len(images))
    loaded = tf.saved_model.load(str(saved_model_path))
    signature = loaded.signatures["detect_image"]
    feeds = [{"image": tf.constant(image, tf.uint8)} for image in images]
    takes_proposals = "proposals" in signature.structured_input_signature[1]
    search = None
    if takes_proposals:
        runtime = Runtime(saved_model_path)
        search, _ = time_calls(
            {"search": lambda i: feeds[i].update(proposals=runtime.proposals(images[i]))},
            warmup=0,
            repeats=len(images),
        )
    xla_signature = tf.function(lambda **feed: signature(**feed), jit_compile=True)
    detect = {
        "saved_model": lambda i: signature(**feeds[i % len(feeds)])["num_detections"].numpy(),
        "xla": lambda i: xla_signature(**feeds[i % len(feeds)])["num_detections"].numpy(),
    }
    calls = dict(detect)
    failed = {}
    for label, path in (artifacts or {}).items():
        try:
            runtime = Runtime(path, num_threads=num_threads or os.cpu_count())
        except Exception as err:
            failed[label] = first_line(err)
        else:
            calls[label] = lambda i, runtime=runtime: runtime(images[i % len(images)])
    stats, reasons = time_calls(calls, warmup=warmup, repeats=repeats, catch=True)
    reasons.update(failed)

    def batch(i):
        return range(i * concurrency, (i + 1) * concurrency)

    with ThreadPoolExecutor(concurrency) as pool:
        ways = {}
        for label, prefix in (("saved_model", ""), ("xla", "xla ")):
            if label not in reasons:
                call = detect[label]
                ways[prefix + "sequential"] = lambda i, call=call: [call(j) for j in batch(i)]
                ways[prefix + "concurrent"] = lambda i, call=call: list(pool.map(call, batch(i)))
        round_stats, round_reasons = time_calls(
            ways, warmup=max(1, warmup // concurrency), repeats=rounds, catch=True
        )
    formats = {label: stats.get(label) or {"reason": reasons[label]} for label in [*calls, *failed]}
    plain, xla = formats["saved_model"], formats["xla"]
    return {
        "proposals": takes_proposals,
        "proposal_search_ms": search["search"]["latency_ms"] if search else None,
        "formats": formats,
        "xla_ratio": xla["latency_ms"] / plain["latency_ms"]
        if "latency_ms" in xla and "latency_ms" in plain
        else None,
        "throughput": {
            way: concurrency * 1000.0 / s["latency_ms"] for way, s in round_stats.items()
        },
        "throughput_reasons": round_reasons,
    }


def benchmark_forward(
    model, *, batch: int = 8, warmup: int = 3, repeats: int = 20, seed: int = 0
) -> dict:
    """The Keras network's forward pass alone at batch 1 and ``batch``, plain and XLA.

    What true batching and XLA give the network of a family whose model takes a batch of
    fixed-size images (single-box heads, YOLOv8, RetinaNet): no decoding, resizing or NMS,
    which the serving signature adds per image. ``plain`` is ``tf.function(model)``, ``xla``
    the same with ``jit_compile=True``; the four ways are timed interleaved on random
    inputs of ``model.input_shape``.

    Args:
        model: a built Keras model with a fixed input shape ``(None, H, W, C)``.
        batch: the batched way's batch size.
        warmup, repeats: untimed and timed calls per way.
        seed: of the random inputs.

    Returns:
        ``{"batch": batch, "ways": {"plain x1"|"plain xN"|"xla x1"|"xla xN": {"latency_ms",
        "latency_p90_ms" (per call), "images_per_s"}}, "reasons": {way: reason},
        "batch_speedup": images/s plain xN / plain x1, "xla_ratio": XLA / plain ms at batch
        1, "xla_ratio_batched": the same at batch N}`` (a ratio is ``None`` where a way
        failed).

    Example:
        >>> benchmark_forward(keras.saving.load_model("train/model.keras"))  # doctest: +SKIP
    """
    rng = np.random.default_rng(seed)
    shape = tuple(model.input_shape[1:])
    inputs = {
        size: tf.constant(rng.uniform(0, 255, (size, *shape)).astype("float32"))
        for size in (1, batch)
    }
    functions = {
        "plain": tf.function(lambda x: model(x, training=False)),
        "xla": tf.function(lambda x: model(x, training=False), jit_compile=True),
    }
    calls = {
        f"{name} x{'N' if size == batch else 1}": (
            lambda i, fn=fn, x=x: [t.numpy() for t in tf.nest.flatten(fn(x))]
        )
        for name, fn in functions.items()
        for size, x in inputs.items()
    }
    stats, reasons = time_calls(calls, warmup=warmup, repeats=repeats, catch=True)
    for label, s in stats.items():
        s["images_per_s"] = (batch if label.endswith("xN") else 1) * 1000.0 / s["latency_ms"]

    def ratio(top, bottom, key):
        return stats[top][key] / stats[bottom][key] if {top, bottom} <= set(stats) else None

    return {
        "batch": batch,
        "ways": stats,
        "reasons": reasons,
        "batch_speedup": ratio("plain xN", "plain x1", "images_per_s"),
        "xla_ratio": ratio("xla x1", "plain x1", "latency_ms"),
        "xla_ratio_batched": ratio("xla xN", "plain xN", "latency_ms"),
    }
