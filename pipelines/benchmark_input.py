"""Measure the input pipeline's throughput: images/s of decode + resize + batch.

The first epoch reads and decodes every JPEG; later epochs replay the in-memory cache.
Each is timed over several repeats (a fresh pipeline each) and the medians are printed.

By default ~500 synthetic 300x200 JPEGs (the size of Caltech-101 images) are written to
a temporary folder; ``--records DIR`` uses a fetched record set instead.

Example:
    flock /tmp/kdet-cpu.lock python pipelines/benchmark_input.py --repeats 3
    python pipelines/benchmark_input.py --records data/caltech101 --split train
"""

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def synthetic_records(folder: Path, count: int, width: int, height: int, seed: int = 0):
    """Write ``count`` photo-like JPEGs (smooth shading + noise + a box) and their records."""
    from kdet.datasets.records import Record, RecordSet

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    records = []
    for i in range(count):
        base = rng.uniform(40, 200, size=3)
        shading = (xx / width)[..., None] * rng.uniform(-60, 60, 3) + (yy / height)[
            ..., None
        ] * rng.uniform(-60, 60, 3)
        pixels = base + shading + rng.normal(0, 12, size=(height, width, 3))
        x1, y1 = int(rng.integers(0, width // 2)), int(rng.integers(0, height // 2))
        x2, y2 = x1 + int(rng.integers(20, width // 2)), y1 + int(rng.integers(20, height // 2))
        pixels[y1:y2, x1:x2] = rng.uniform(0, 255, size=3)
        name = f"image_{i:04d}.jpg"
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(folder / name, quality=90)
        records.append(Record(name, width, height, [[x1, y1, x2, y2]], [0], split="train"))
    return RecordSet("synthetic", ["object"], records, folder)


def time_epochs(examples, epochs: int, **pipeline_kwargs) -> list[dict]:
    """Time each epoch of one fresh pipeline.

    Returns, per epoch: ``first_batch_s`` (latency until the first batch: iterator and
    thread start-up), ``images_per_s`` (whole epoch) and ``steady_images_per_s`` (after
    the first batch).
    """
    from kdet.data import build_pipeline

    dataset = build_pipeline(examples, **pipeline_kwargs)
    timings = []
    for _ in range(epochs):
        start = time.perf_counter()
        batches = iter(dataset)
        first = int(next(batches)["images"].shape[0])
        first_batch_s = time.perf_counter() - start
        rest = sum(int(batch["images"].shape[0]) for batch in batches)
        total_s = time.perf_counter() - start
        timings.append(
            {
                "first_batch_s": first_batch_s,
                "images_per_s": (first + rest) / total_s,
                "steady_images_per_s": rest / (total_s - first_batch_s),
            }
        )
    return timings


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=Path, help="a fetched record set folder")
    parser.add_argument("--split", help="split of --records to read (default: all)")
    parser.add_argument("--images", type=int, default=500, help="synthetic images")
    parser.add_argument("--image-width", type=int, default=300)
    parser.add_argument("--image-height", type=int, default=200)
    parser.add_argument("--size", type=int, default=224, help="output height and width")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--keep-aspect-ratio", action="store_true")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per repeat (>= 2)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error(f"--epochs must be >= 2 to time cached epochs. Received: {args.epochs}")

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from kdet.data import from_records
    from kdet.datasets.records import RecordSet

    with tempfile.TemporaryDirectory(prefix="kdet-bench-") as tmp:
        if args.records:
            record_set = RecordSet.load(args.records)
            source = str(args.records)
        else:
            record_set = synthetic_records(
                Path(tmp), args.images, args.image_width, args.image_height
            )
            source = f"{args.images} synthetic {args.image_width}x{args.image_height} JPEGs"
        examples = from_records(record_set, args.split)
        runs = []
        for repeat in range(args.repeats):
            timings = time_epochs(
                examples,
                args.epochs,
                image_size=(args.size, args.size),
                batch_size=args.batch_size,
                keep_aspect_ratio=args.keep_aspect_ratio,
                cache=True,
            )
            runs.append(timings)
            print(
                f"repeat {repeat + 1}: first epoch {timings[0]['images_per_s']:.0f} images/s "
                f"({timings[0]['steady_images_per_s']:.0f} after a first batch taking "
                f"{timings[0]['first_batch_s']:.2f} s), cached epochs "
                + ", ".join(f"{t['images_per_s']:.0f}" for t in timings[1:])
                + " images/s"
            )

    def median(epochs, key):
        return round(statistics.median(t[key] for run in runs for t in run[epochs]), 2)

    result = {
        "source": source,
        "images": len(record_set.split(args.split) if args.split else record_set),
        "image_size": [args.size, args.size],
        "batch_size": args.batch_size,
        "cpu_count": os.cpu_count(),
        "repeats": args.repeats,
        "first_epoch_images_per_s": median(slice(0, 1), "images_per_s"),
        "first_epoch_steady_images_per_s": median(slice(0, 1), "steady_images_per_s"),
        "first_batch_s": median(slice(0, 1), "first_batch_s"),
        "cached_epoch_images_per_s": median(slice(1, None), "images_per_s"),
    }
    print(
        f"median over {args.repeats} repeats: first epoch (read + decode + resize + batch) "
        f"{result['first_epoch_images_per_s']:.0f} images/s, "
        f"{result['first_epoch_steady_images_per_s']:.0f} images/s after the first batch "
        f"({result['first_batch_s']:.2f} s); cached epochs "
        f"{result['cached_epoch_images_per_s']:.0f} images/s"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
