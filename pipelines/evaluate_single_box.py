"""DVC stages ``evaluate_bbox_regressor`` and ``evaluate_multiclass``.

Usage: ``python pipelines/evaluate_single_box.py GROUP`` (``bbox_regressor`` or
``multiclass``; parameters from ``params.yaml: GROUP.evaluate``). Scores
``data/models/GROUP/model.keras`` on the test split of ``data/raw/caltech101`` next to the
mean-box baseline, writes ``data/metrics/GROUP.json`` and
``data/plots/GROUP/confusion.csv`` and logs both to the training's MLflow run.
"""

import argparse
import json

import dvc.api

from kdet.models.single_box.experiment import run_evaluation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("group", choices=["bbox_regressor", "multiclass"])
    args = parser.parse_args()
    params = dvc.api.params_show(stages=f"evaluate_{args.group}")[args.group]["evaluate"]
    metrics = run_evaluation(
        records_dir="data/raw/caltech101",
        model_dir=f"data/models/{args.group}",
        metrics_path=f"data/metrics/{args.group}.json",
        plots_dir=f"data/plots/{args.group}",
        batch_size=params["batch_size"],
    )
    print(json.dumps({k: v for k, v in metrics.items() if isinstance(v, int | float)}))


if __name__ == "__main__":
    main()
