"""DVC stage ``evaluate_yolov8_NAME``: COCO-style evaluation on the test split, PR curves,
a prediction grid, and the exported SavedModel with its CPU latency.

Usage: ``python pipelines/evaluate_yolov8.py NAME`` (parameters: ``params.yaml:
evaluate_yolov8.NAME``). Writes ``data/metrics/yolov8_NAME.json``,
``data/plots/yolov8_NAME/{pr_curve.csv,pr_curves.png,predictions.png}`` and
``data/models/yolov8_NAME/saved_model``, and completes the training stage's MLflow run.
"""

import argparse
import json
from pathlib import Path

import dvc.api
import keras
import mlflow

from kdet import tracking
from kdet.datasets.records import RecordSet
from kdet.latency import latency_images, measure_latency
from kdet.metrics import plot_pr_curves, write_pr_curves
from kdet.models.yolov8.evaluate import evaluate_yolov8
from kdet.models.yolov8.export import export_yolov8
from kdet.models.yolov8.figures import prediction_grid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("name")
    args = parser.parse_args()
    stage = f"evaluate_yolov8_{args.name}"
    params = dvc.api.params_show(stages=stage)["evaluate_yolov8"][args.name]
    records = RecordSet.load(f"data/raw/{args.name}")
    test = records.split("test")
    model_dir = Path(f"data/models/yolov8_{args.name}")
    plots_dir = Path(f"data/plots/yolov8_{args.name}")
    plots_dir.mkdir(parents=True, exist_ok=True)
    model = keras.saving.load_model(model_dir / "model.keras")
    image_size = tuple(model.input_shape[1:3])
    result, predictions = evaluate_yolov8(
        model, test, image_size=image_size, batch_size=params["batch_size"], **params["decoder"]
    )
    saved_model = export_yolov8(
        model, model_dir / "saved_model", records.class_names, **params["export_decoder"]
    )
    latency = measure_latency(saved_model, latency_images(records))
    metrics = {**result.as_metrics(), **latency, "test_images": len(test)}
    write_pr_curves(result, plots_dir / "pr_curve.csv")
    pr_figure = plot_pr_curves(result)
    pr_figure.savefig(plots_dir / "pr_curves.png", dpi=100)
    grid = prediction_grid(test, predictions, score_threshold=params["grid_score_threshold"])
    grid.savefig(plots_dir / "predictions.png", dpi=100)

    tracking.configure()
    run_id = (model_dir / "mlflow_run_id").read_text().strip()
    with mlflow.start_run(run_id=run_id):
        tracking.log_metrics(metrics)
        mlflow.log_params(tracking.flatten_params({"evaluate": params}))
        tracking.log_figure(pr_figure, "pr_curves.png")
        tracking.log_figure(grid, "predictions.png")
        tracking.log_saved_model(saved_model)
    Path(f"data/metrics/yolov8_{args.name}.json").write_text(json.dumps(metrics, indent=2))
    print(json.dumps(metrics))


if __name__ == "__main__":
    main()
