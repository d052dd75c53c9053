"""Latency and size of deployed artifacts, measured the same way for every format.

Each artifact is loaded with :class:`kdet.deploy.Runtime` and timed on whole calls (uint8
image in, detections out, caller-side resize and NMS included), batch 1, after warm-up
calls, images sent in turn, the artifacts interleaved (:func:`kdet.latency.time_calls`).
Thread counts: ONNX Runtime and LiteRT get ``num_threads`` intra-op threads (ONNX Runtime
one inter-op thread); TensorFlow keeps its process-wide pool (``tf.config.threading``
values, 0 = all cores) and the result says which.

Example:
    >>> rows = benchmark({"saved_model": "sm", "onnx": "m.onnx"}, images)  # doctest: +SKIP
    >>> print(format_table(rows))  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
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
