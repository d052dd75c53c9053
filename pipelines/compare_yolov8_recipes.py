"""Compare the keras.io YOLOv8 example recipe with kdet's on one dataset, side by side.

Usage: ``python pipelines/compare_yolov8_recipes.py raccoon --epochs 15 --image-size 256``
(needs ``data/raw/NAME`` from ``dvc repro fetch_NAME``). Same data, epochs, input size,
backbone and seed for both; prints both mAP@0.5, writes
``data/metrics/yolov8_NAME_recipes.json`` and logs one MLflow run per recipe in the
experiment NAME.
"""

import argparse
import json
from pathlib import Path

import mlflow

from kdet import tracking
from kdet.datasets.records import RecordSet
from kdet.models.yolov8.compare import compare_recipes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("name")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--backbone-size", default="xs")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    records = RecordSet.load(f"data/raw/{args.name}")
    settings = {
        "image_size": args.image_size,
        "batch_size": args.batch_size,
        "epochs": args.epochs,
        "backbone_size": args.backbone_size,
        "seed": args.seed,
    }
    results = compare_recipes(records.split("train"), records.split("test"), **settings)
    for recipe, metrics in results.items():
        with tracking.start_run(
            args.name, run_name=f"yolov8_recipe_{recipe}", params={**settings, "recipe": recipe}
        ):
            mlflow.set_tag("family", "yolov8")
            tracking.log_metrics(metrics)
        print(f"{recipe:>9} recipe: mAP@0.5 = {metrics['mAP50']:.4f}  mAP = {metrics['mAP']:.4f}")
    out = Path(f"data/metrics/yolov8_{args.name}_recipes.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"settings": settings, "results": results}, indent=2))


if __name__ == "__main__":
    main()
