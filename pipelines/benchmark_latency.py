"""DVC stage ``benchmark_latency``: inference latency per family, side by side.

For each trained row (default: every ``data/models/NAME/saved_model``; rows are looked up
in ``params.yaml``'s ``experiments`` and ``finetune`` tables), on up to ``images`` of its
test images, :func:`kdet.deploy.benchmark.benchmark_saved_model` times in one interleaved loop the
``detect_image`` signature (batch 1), the same signature XLA-compiled, and the row's
``export/model.onnx`` / ``export/model.tflite`` where they exist; then rounds of
``concurrency`` images sent one after another vs from that many threads at once (the
contract takes one image per call, so concurrent requests are how a deployment batches).
For families whose Keras model takes a batch of whole images (single-box heads, YOLOv8,
RetinaNet) and whose ``train/model.keras`` is there, :func:`kdet.deploy.benchmark.benchmark_forward`
also times the network alone at batch 1 and ``concurrency``, plain and XLA-compiled: true
batching, and XLA where the serving signature cannot be compiled.
R-CNN / Fast R-CNN get their selective-search proposals precomputed: their times exclude
the search, whose median per image is listed beside them.

Prints a table, TensorFlow's threads and ``os.getloadavg()`` at start and end; writes
``data/metrics/latency.json`` and ``data/plots/latency/latency.csv``. Parameters:
``params.yaml: latency``.

Usage:
    python pipelines/benchmark_latency.py                        # every row
    python pipelines/benchmark_latency.py yolov8_raccoon rcnn_raccoon
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shlex
import sys
from pathlib import Path

import yaml

NAME = "latency"
# Families whose Keras model takes a batch of fixed-size whole images.
FORWARD_FAMILIES = ("bbox_regressor", "multiclass", "yolov8", "retinanet")
CSV_COLUMNS = [
    "label",
    "row",
    "family",
    "format",
    "latency_ms",
    "latency_p90_ms",
    "images_per_s_one",
    "images_per_s_batched",
    "xla_ratio",
    "reason",
]


def find_rows(params: dict, models: Path) -> dict[str, dict]:
    """``{name: params row}`` of every ``models/NAME/saved_model`` of a row, in name order.

    The others (a seeds twin ``NAME_seedS``, a ``kdet evaluate`` run without a row) are
    named on stderr and left out.
    """
    table = {**params["experiments"], **params.get("finetune", {})}
    rows = {}
    for saved_model in sorted(models.glob("*/saved_model/saved_model.pb")):
        name = saved_model.parent.parent.name
        if name in table:
            rows[name] = table[name]
        else:
            note = f"{saved_model.parent}: no row {name!r} in params.yaml; not timed"
            print(note, file=sys.stderr)
    return rows


def table_rows(results: dict[str, dict]) -> list[dict]:
    """One flat row per (model row, format): the CSV rows and the printed table's."""
    flat = []
    for name, result in results.items():
        throughput = result["throughput"]
        for way, stats in result["formats"].items():
            prefix = "xla " if way == "xla" else ""
            batched = way in ("saved_model", "xla")
            flat.append(
                {
                    "label": f"{name}/{way}",
                    "row": name,
                    "family": result["family"],
                    "format": way,
                    "latency_ms": stats.get("latency_ms"),
                    "latency_p90_ms": stats.get("latency_p90_ms"),
                    "images_per_s_one": throughput.get(prefix + "sequential") if batched else None,
                    "images_per_s_batched": throughput.get(prefix + "concurrent")
                    if batched
                    else None,
                    "xla_ratio": result["xla_ratio"] if way == "xla" else None,
                    "reason": stats.get("reason"),
                }
            )
        forward = result.get("forward")
        for way in ("plain", "xla") if forward else ():
            one, many = forward["ways"].get(f"{way} x1", {}), forward["ways"].get(f"{way} xN", {})
            flat.append(
                {
                    "label": f"{name}/forward {way}",
                    "row": name,
                    "family": result["family"],
                    "format": f"forward {way}",
                    "latency_ms": one.get("latency_ms"),
                    "latency_p90_ms": one.get("latency_p90_ms"),
                    "images_per_s_one": one.get("images_per_s"),
                    "images_per_s_batched": many.get("images_per_s"),
                    "xla_ratio": forward["xla_ratio"] if way == "xla" else None,
                    "reason": forward["reasons"].get(f"{way} x1"),
                }
            )
    return flat


def format_table(flat: list[dict], concurrency: int) -> str:
    """The printed table; a failed way shows ``failed`` and its reason follows the table.

    Columns: batch-1 median and p90 ms per image; images/s one at a time (SavedModel: calls
    one after another; forward: batch 1) and ``x concurrency`` (SavedModel: that many
    concurrent calls; forward: one batch of that size); XLA / plain median ms."""

    def number(value, width, digits):
        return f"{value:>{width}.{digits}f}" if value is not None else f"{'-':>{width}}"

    header = (
        f"{'row':<26} {'format':<14} {'median ms':>9} {'p90 ms':>8} {'img/s 1':>9} "
        f"{'img/s x' + str(concurrency):>9} {'XLA/plain':>9}"
    )
    lines = [header, "-" * len(header)]
    failures = []
    for row in flat:
        start = f"{row['row']:<26} {row['format']:<14} "
        if row["reason"]:
            lines.append(start + "failed")
            failures.append(f"{row['row']} {row['format']}: {row['reason']}")
            continue
        lines.append(
            start
            + f"{number(row['latency_ms'], 9, 1)} {number(row['latency_p90_ms'], 8, 1)} "
            + f"{number(row['images_per_s_one'], 9, 2)} "
            + f"{number(row['images_per_s_batched'], 9, 2)} "
            + number(row["xla_ratio"], 9, 2)
        )
    return "\n".join(lines + failures)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rows", nargs="*", help="rows to time (default: every trained row)")
    args = parser.parse_args(argv)
    params = yaml.safe_load(Path("params.yaml").read_text())
    options = params[NAME]

    import tensorflow as tf

    # Set before TensorFlow runs anything: the pools are process-wide.
    tf.config.threading.set_intra_op_parallelism_threads(options["intra_op_threads"] or 0)
    tf.config.threading.set_inter_op_parallelism_threads(options["inter_op_threads"] or 0)

    from kdet import atomic
    from kdet.datasets.records import RecordSet
    from kdet.deploy.benchmark import benchmark_forward, benchmark_saved_model, tf_threads
    from kdet.experiment import Layout
    from kdet.latency import latency_images

    layout = Layout()
    rows = find_rows(params, Path(layout.root) / "data" / "models")
    unknown = sorted(set(args.rows) - set(rows))
    if unknown:
        raise SystemExit(f"no trained row {unknown[0]!r} (have: {', '.join(rows)})")
    rows = {name: row for name, row in rows.items() if name in (args.rows or rows)}
    threads = options["intra_op_threads"] or os.cpu_count()
    report = {
        "command": shlex.join(["python", *sys.argv]),
        "tf_threads": tf_threads(),
        "onnx_litert_threads": threads,
        "cpu_count": os.cpu_count(),
        "concurrency": options["concurrency"],
        "loadavg_start": os.getloadavg(),
    }
    print(f"{report['command']}\n{report['tf_threads']}, ONNX Runtime / LiteRT intra={threads}")
    print(f"load average at start: {report['loadavg_start']}")
    results = {}
    for name, row in rows.items():
        records = RecordSet.load(layout.records(row["dataset"]))
        images = latency_images(
            records, options["images"], class_names=(row.get("train") or {}).get("classes")
        )
        export = layout.export_dir(name)
        artifacts = {
            label: export / file
            for label, file in (("onnx", "model.onnx"), ("litert", "model.tflite"))
            if (export / file).exists()
        }
        print(f"{name}: {len(images)} images, {', '.join(['saved_model', *artifacts])}")
        results[name] = {
            "family": row["family"],
            "images": len(images),
            **benchmark_saved_model(
                layout.saved_model(name),
                images,
                artifacts=artifacts,
                concurrency=options["concurrency"],
                warmup=options["warmup"],
                repeats=options["repeats"],
                rounds=options["rounds"],
                num_threads=threads,
            ),
        }
        model_file = layout.train_dir(name) / "model.keras"
        if row["family"] in FORWARD_FAMILIES and model_file.exists():
            import keras

            import kdet.models  # noqa: F401  (registers the families' Keras classes)

            results[name]["forward"] = benchmark_forward(
                keras.saving.load_model(model_file, compile=False),
                batch=options["concurrency"],
                warmup=options["warmup"],
                repeats=options["repeats"],
            )
    report["loadavg_end"] = os.getloadavg()
    report["rows"] = results
    flat = table_rows(results)
    print(format_table(flat, options["concurrency"]))
    for name, result in results.items():
        if result["proposals"]:
            print(
                f"{name}: proposals supplied, search excluded "
                f"(selective search median {result['proposal_search_ms']:.0f} ms per image)"
            )
    print(f"load average at end: {report['loadavg_end']}")
    atomic.write_text(Path("data/metrics") / f"{NAME}.json", json.dumps(report, indent=2))
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    writer.writerows(flat)
    atomic.write_text(layout.plots(NAME) / f"{NAME}.csv", text.getvalue())


if __name__ == "__main__":
    main()
