"""DVC stage ``compare_yolov8_recipes_NAME``: the keras.io YOLOv8 example recipe against
kdet's, side by side at several epoch budgets, on ``data/raw/NAME``.

Usage: ``python pipelines/compare_yolov8_recipes.py NAME`` (parameters: ``params.yaml:
compare_yolov8.NAME``). Same data, epochs, input size, backbone and seed for both recipes
at each budget; prints both mAP@0.5 and their ratio per budget, writes
``data/metrics/yolov8_NAME_recipes.json``, ``data/plots/yolov8_NAME_recipes/
{recipes.csv,recipes.png}`` and logs one MLflow run per recipe and budget in the
experiment NAME.
"""

import argparse
import json
from pathlib import Path

import mlflow
import yaml

from kdet import tracking
from kdet.datasets.records import RecordSet
from kdet.models.yolov8.compare import compare_budgets, plot_budgets, write_budget_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("name")
    args = parser.parse_args()
    stage = f"compare_yolov8_recipes_{args.name}"
    params = yaml.safe_load(Path("params.yaml").read_text())["compare_yolov8"][args.name]
    records = RecordSet.load(f"data/raw/{args.name}")
    settings = {key: value for key, value in params.items() if key != "epochs"}

    def log_run(epochs: int, recipe: str, metrics: dict) -> None:
        run_params = {**settings, "epochs": epochs, "recipe": recipe}
        with tracking.start_run(
            args.name,
            run_name=f"yolov8_recipe_{recipe}_{epochs}ep",
            params=run_params,
            stage=stage,
        ):
            mlflow.set_tag("family", "yolov8")
            tracking.log_metrics(metrics)
        print(
            f"{epochs:>3} epochs {recipe:>9} recipe: mAP@0.5 = {metrics['mAP50']:.4f}  "
            f"mAP = {metrics['mAP']:.4f}",
            flush=True,
        )

    rows = compare_budgets(
        records.split("train"),
        records.split("test"),
        epochs=params["epochs"],
        on_result=log_run,
        **settings,
    )
    for row in rows:
        ratio = "n/a" if row["mAP50_ratio"] is None else f"{row['mAP50_ratio']:.2f}"
        print(
            f"{row['epochs']:>3} epochs: keras_io {row['keras_io']['mAP50']:.4f}  "
            f"kdet {row['kdet']['mAP50']:.4f}  ratio {ratio}"
        )
    plots = Path(f"data/plots/yolov8_{args.name}_recipes")
    plots.mkdir(parents=True, exist_ok=True)
    write_budget_table(rows, plots / "recipes.csv")
    plot_budgets(rows, f"YOLOv8 recipes on {args.name}").savefig(plots / "recipes.png", dpi=100)
    metrics = {
        "settings": settings,
        "budgets": {f"{row['epochs']}ep": row for row in rows},
    }
    out = Path(f"data/metrics/yolov8_{args.name}_recipes.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    main()
