"""DVC stage ``train_yolov8_NAME``: train YOLOv8 on ``data/raw/NAME`` (train split).

Usage: ``python pipelines/train_yolov8.py NAME`` (parameters: ``params.yaml:
train_yolov8.NAME``). Writes ``data/models/yolov8_NAME/model.keras``, the per-epoch
history ``data/plots/yolov8_NAME/history.csv``, ``data/metrics/yolov8_NAME_train.json``
and starts the MLflow run (experiment NAME) that the evaluation stage completes. The
``strategy`` parameter picks the ``tf.distribute`` strategy (``batch_size`` is per replica);
on a non-chief worker of a multi-worker cluster the script trains along and writes nothing.
"""

import argparse
import json
import time
from pathlib import Path

import dvc.api
import mlflow

from kdet import distribute, tracking
from kdet.datasets.records import RecordSet
from kdet.models.yolov8.train import train_yolov8
from kdet.training import plot_history


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("name")
    args = parser.parse_args()
    stage = f"train_yolov8_{args.name}"
    params = dvc.api.params_show(stages=stage)["train_yolov8"][args.name]
    records = RecordSet.load(f"data/raw/{args.name}")
    options = {**params, "strategy": distribute.get_strategy(params["strategy"])}
    if not distribute.is_chief(options["strategy"]):
        train_yolov8(records.split("train"), None, **options)
        return
    model_dir = Path(f"data/models/yolov8_{args.name}")
    plots_dir = Path(f"data/plots/yolov8_{args.name}")
    model_dir.mkdir(parents=True, exist_ok=True)
    with tracking.start_run(
        args.name, run_name=f"yolov8_{params['backbone_size']}", params=params, stage=stage
    ) as run:
        mlflow.set_tag("family", "yolov8")
        start = time.perf_counter()
        model, history = train_yolov8(
            records.split("train"),
            None,
            history_csv=plots_dir / "history.csv",
            log_to_mlflow=True,
            **options,
        )
        seconds = time.perf_counter() - start
        model.save(model_dir / "model.keras")
        (model_dir / "mlflow_run_id").write_text(run.info.run_id)
        metrics = {
            "train_seconds": seconds,
            "final_loss": history["loss"][-1],
            "final_box_loss": history["box_loss"][-1],
            "final_class_loss": history["class_loss"][-1],
            "train_images_per_s": history["images_per_s"][-1],
        }
        tracking.log_metrics(metrics)
        mlflow.set_tag("precision", history["precision"])
        tracking.log_figure(plot_history(history, f"YOLOv8 on {args.name}"), "loss_curves.png")
    Path("data/metrics").mkdir(parents=True, exist_ok=True)
    Path(f"data/metrics/yolov8_{args.name}_train.json").write_text(json.dumps(metrics, indent=2))
    print(json.dumps(metrics))


if __name__ == "__main__":
    main()
