"""Latency and size of deployed artifacts, measured the same way for every format.

Each artifact is loaded with :class:`kdet.deploy.Runtime` and timed on whole calls (uint8
image in, detections out, caller-side resize and NMS included), batch 1, after warm-up
calls, images sent in turn, the artifacts interleaved (:func:`kdet.latency.time_calls`).
Thread counts: ONNX Runtime and LiteRT get ``num_threads`` intra-op threads (ONNX Runtime
one inter-op thread); TensorFlow keeps its process-wide pool (``tf.config.threading``
values, 0 = all cores) and the result says which. :func:`benchmark_saved_model` compares
one served SavedModel plain, XLA-compiled, under concurrent calls and as ONNX / LiteRT
artifacts; :func:`benchmark_forward` a Keras network alone at batch 1 and N, plain and XLA.

Example:
    >>> rows = benchmark({"saved_model": "sm", "onnx": "m.onnx"}, images)  # doctest: +SKIP
    >>> print(format_table(rows))  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from kdet.deploy.runtime import Runtime


def artifact_size(path: str | os.PathLike) -> int:
    """Bytes of a file, or of every file under a folder."""
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def tf_threads() -> str:
    """TensorFlow's intra- and inter-op thread pools, e.g. ``tf intra=2 inter=auto``."""
    import tensorflow as tf

    intra = tf.config.threading.get_intra_op_parallelism_threads()
    inter = tf.config.threading.get_inter_op_parallelism_threads()
    return f"tf intra={intra or os.cpu_count()} inter={inter or 'auto'}"


def benchmark(
    artifacts: Mapping[str, str | os.PathLike | Runtime] | Sequence[str | os.PathLike],
    images: Sequence[np.ndarray],
    *,
    warmup: int = 5,
    repeats: int = 50,
    num_threads: int | None = None,
) -> list[dict]:
    """Median / p90 milliseconds per image and file size of each artifact.

    Args:
        artifacts: ``{label: path or loaded Runtime}`` or paths (labelled by file name);
            a loaded :class:`~kdet.deploy.Runtime` is timed with its own threads.
        images: ``uint8 (H, W, 3)`` images; call ``i`` sends image ``i % len(images)``.
        warmup: untimed calls first.
        repeats: timed calls.
        num_threads: intra-op threads for ONNX Runtime / LiteRT (default ``os.cpu_count()``).

    Returns:
        One dict per artifact: ``label, format, path, size_bytes, latency_ms,
        latency_p90_ms, threads``.
    """
    if not isinstance(artifacts, Mapping):
        artifacts = {Path(p).name: p for p in artifacts}
    if not len(images) or repeats < 1:
        raise ValueError(
            f"need at least one image and one timed call. Received: {len(images)} images, "
            f"{repeats=}"
        )
    from kdet.latency import time_calls  # TensorFlow, imported when timing

    threads = num_threads or os.cpu_count()
    runtimes = {
        label: artifact if isinstance(artifact, Runtime) else Runtime(artifact, num_threads=threads)
        for label, artifact in artifacts.items()
    }
    stats, _ = time_calls(
        {
            label: lambda i, runtime=runtime: runtime(images[i % len(images)])
            for label, runtime in runtimes.items()
        },
        warmup=warmup,
        repeats=repeats,
    )
    return [
        {
            "label": label,
            "format": runtime.format,
            "path": str(runtime.path),
            "size_bytes": artifact_size(runtime.path),
            **stats[label],
            "threads": tf_threads()
            if runtime.format == "saved_model"
            else f"intra={runtime.num_threads or threads}",
        }
        for label, runtime in runtimes.items()
    ]


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
    import tensorflow as tf

    from kdet.latency import first_line, image_list, time_calls

    images = image_list(images, repeats)
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
    import tensorflow as tf

    from kdet.latency import time_calls

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


def format_table(rows: Sequence[dict]) -> str:
    """A plain-text table of :func:`benchmark` rows."""
    header = (
        f"{'artifact':<22} {'format':<12} {'size KiB':>9} {'median ms':>10} {'p90 ms':>8}  threads"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        lines.append(
            f"{row['label']:<22} {row['format']:<12} {row['size_bytes'] / 1024:>9.1f} "
            f"{row['latency_ms']:>10.2f} {row['latency_p90_ms']:>8.2f}  {row['threads']}"
        )
    return "\n".join(lines)
