"""Compare SavedModel, ONNX and LiteRT latency and size for one detector, side by side.

Not a DVC stage yet. Without ``--keras-model`` it builds the tiny untrained YOLOv8 (xs, 64x64,
2 classes) that the deploy tests use, exports its SavedModel (``export_yolov8``) and the raw
ONNX / LiteRT / LiteRT float16 / LiteRT int8 artifacts into ``--out``, then times each with
:func:`kdet.deploy.benchmark` on random images of a few sizes.

Usage:
    python pipelines/benchmark_deploy.py --out /tmp/deploy_bench --threads 1
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="data/deploy_benchmark", help="artifacts folder")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime / LiteRT threads")
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args(argv)

    import keras

    from kdet import deploy
    from kdet.models import get_model
    from kdet.models.yolov8.export import export_yolov8

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    class_names = ["cat", "dog"]
    keras.utils.set_random_seed(0)
    model = get_model("yolov8", num_classes=2, image_size=64, backbone_size="xs")
    rng = np.random.default_rng(0)
    images = [
        rng.integers(0, 256, shape, dtype=np.uint8)
        for shape in [(48, 80, 3), (100, 70, 3), (64, 64, 3), (480, 640, 3)]
    ]
    options = {"class_names": class_names, "confidence_threshold": 0.0}
    artifacts = {
        "saved_model": export_yolov8(
            model, out / "saved_model", class_names, confidence_threshold=0.0
        ),
        "onnx (raw)": deploy.export(model, out / "yolov8.onnx", "onnx", **options),
        "litert (raw)": deploy.export(model, out / "yolov8.tflite", "litert", **options),
        "litert float16": deploy.export(
            model, out / "yolov8_fp16.tflite", "litert", "float16", **options
        ),
        "litert int8": deploy.export(
            model, out / "yolov8_int8.tflite", "litert", "int8", images * 8, **options
        ),
    }
    rows = deploy.benchmark(
        artifacts, images, warmup=args.warmup, repeats=args.repeats, num_threads=args.threads
    )
    print(deploy.format_table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
