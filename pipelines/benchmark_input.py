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


def time_epochs(examples, epochs: int, **pipeline_kwargs) -> list[float]:
    """Images/s of each epoch of one fresh pipeline."""
    from kdet.data import build_pipeline

    dataset = build_pipeline(examples, **pipeline_kwargs)
    rates = []
    for _ in range(epochs):
        start = time.perf_counter()
        images = sum(int(batch["images"].shape[0]) for batch in dataset)
        rates.append(images / (time.perf_counter() - start))
    return rates


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
    parser.add_argument("--repeats", type=int, default=3)
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
        first, cached = [], []
        for repeat in range(args.repeats):
            rates = time_epochs(
                examples,
                args.epochs,
                image_size=(args.size, args.size),
                batch_size=args.batch_size,
                keep_aspect_ratio=args.keep_aspect_ratio,
                cache=True,
            )
            first.append(rates[0])
            cached.append(statistics.median(rates[1:]))
            print(
                f"repeat {repeat + 1}: first epoch {rates[0]:.0f} images/s, "
                f"cached epochs {', '.join(f'{r:.0f}' for r in rates[1:])} images/s"
            )
    result = {
        "source": source,
        "images": len(record_set.split(args.split).records if args.split else record_set),
        "image_size": [args.size, args.size],
        "batch_size": args.batch_size,
        "cpu_count": os.cpu_count(),
        "first_epoch_images_per_s": round(statistics.median(first), 1),
        "cached_epoch_images_per_s": round(statistics.median(cached), 1),
    }
    print(
        f"median over {args.repeats} repeats: first epoch (read + decode + resize + batch) "
        f"{result['first_epoch_images_per_s']:.0f} images/s; cached epochs "
        f"{result['cached_epoch_images_per_s']:.0f} images/s"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
