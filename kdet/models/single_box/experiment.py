"""Train and evaluate a single-box model as a tracked experiment (what the DVC stages run).

:func:`run_training` trains, saves ``model.keras`` and the serving SavedModel, and logs an
MLflow run (params, per-epoch metrics, loss curves, the SavedModel, the Keras model with a
signature, registered under a model name). :func:`run_evaluation` scores the saved model
on the test split, writes the metrics JSON and the confusion CSV, and adds the metrics and
figures to the same MLflow run.

Example:
    >>> run_training(records_dir="data/raw/caltech101", model_dir="data/models/bbox_regressor",
    ...              plots_dir="data/plots/bbox_regressor", run_name="bbox_regressor",
    ...              model="bbox_regressor", class_names=["airplanes"])  # doctest: +SKIP
    >>> run_evaluation(records_dir="data/raw/caltech101",
    ...                model_dir="data/models/bbox_regressor",
    ...                metrics_path="data/metrics/bbox_regressor.json",
    ...                plots_dir="data/plots/bbox_regressor")  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Mapping
from pathlib import Path

import keras
import numpy as np

from kdet import distribute, latency, tracking
from kdet.datasets.records import RecordSet
from kdet.models.single_box.data import load_single_box_data
from kdet.models.single_box.evaluate import (
    confusion_figure,
    evaluate_single_box,
    prediction_grid,
)
from kdet.models.single_box.serving import export_single_box_model
from kdet.models.single_box.train import train_single_box
from kdet.training import plot_history

RUN_FILE = "run.json"


def run_training(
    *,
    records_dir: str | os.PathLike,
    model_dir: str | os.PathLike,
    plots_dir: str | os.PathLike,
    run_name: str,
    experiment: str = "caltech101",
    registered_model_name: str | None = None,
    params: Mapping | None = None,
    stage: str | None = None,
    metrics_path: str | os.PathLike | None = None,
    **train_options,
) -> dict:
    """Train with :func:`train_single_box` inside an MLflow run and save the model.

    Writes ``model_dir/model.keras``, ``model_dir/saved_model/`` (serving contract),
    ``model_dir/run.json`` (MLflow run id, classes, input size, timings),
    ``plots_dir/history.csv`` and, when asked, ``metrics_path``.

    Args:
        records_dir: folder of the dataset's ``records.json``.
        model_dir: output folder of the model.
        plots_dir: output folder of the per-epoch CSV.
        run_name: the MLflow run's name.
        experiment: the MLflow experiment (the dataset's name).
        registered_model_name: MLflow model registry name (default
            ``"<experiment>_<model>"``).
        params: parameters to log (e.g. the stage's params group).
        stage: DVC stage name for the run's tags.
        metrics_path: where to write the training's numbers as JSON (the last epoch's
            metrics and ``train_*`` timings, named as in the MLflow run); ``None`` for
            nowhere.
        **train_options: keyword arguments of :func:`train_single_box`, ``strategy``
            included.

    Returns:
        The content of ``run.json``; ``{}`` on a non-chief worker of a multi-worker
        cluster, which trains along but writes nothing and logs no run.
    """
    import matplotlib.pyplot as plt
    import mlflow
    from mlflow.models import infer_signature

    records = RecordSet.load(records_dir)
    strategy = distribute.get_strategy(train_options.pop("strategy", "auto"))
    if not distribute.is_chief(strategy):
        train_single_box(records, strategy=strategy, **train_options)
        return {}
    model_dir, plots_dir = Path(model_dir), Path(plots_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    plots_dir.mkdir(parents=True, exist_ok=True)
    model_name = train_options.get("model", "bbox_regressor")
    registered_model_name = registered_model_name or f"{experiment}_{model_name}"
    with tracking.start_run(experiment, run_name=run_name, params=params, stage=stage) as run:
        result = train_single_box(
            records,
            history_csv=plots_dir / "history.csv",
            log_to_mlflow=True,
            strategy=strategy,
            **train_options,
        )
        model = result.model
        model.save(model_dir / "model.keras")
        saved_model = export_single_box_model(model, model_dir / "saved_model", result.class_names)
        tracking.log_saved_model(saved_model)
        figure = plot_history(result.history, title=run_name)
        tracking.log_figure(figure, "loss_curves.png")
        plt.close(figure)
        train_metrics = {f"train_{k}": v for k, v in result.info.items()}
        tracking.log_metrics(train_metrics)
        example = result.data.images[result.train_rows[:2]].astype(np.float32)
        # A direct call, not predict: under a multi-worker strategy predict would wait for
        # the other workers, which do not log models.
        outputs = {k: np.asarray(v) for k, v in model(example, training=False).items()}
        mlflow.keras.log_model(
            model,
            name="model",
            signature=infer_signature(example, outputs),
            registered_model_name=registered_model_name,
        )
        info = {
            "run_id": run.info.run_id,
            "experiment": experiment,
            "model": model_name,
            "registered_model_name": registered_model_name,
            "class_names": result.class_names,
            "image_size": list(model.input_shape[1:3]),
            **result.info,
        }
    (model_dir / RUN_FILE).write_text(json.dumps(info, indent=1))
    if metrics_path is not None:
        last_epoch = {name: values[-1] for name, values in result.history.items() if values}
        Path(metrics_path).parent.mkdir(parents=True, exist_ok=True)
        numbers = flat_metrics({**last_epoch, **train_metrics})
        Path(metrics_path).write_text(json.dumps(numbers, indent=1))
    return info


def run_evaluation(
    *,
    records_dir: str | os.PathLike,
    model_dir: str | os.PathLike,
    metrics_path: str | os.PathLike,
    plots_dir: str | os.PathLike,
    batch_size: int = 32,
) -> dict:
    """Evaluate ``model_dir/model.keras`` on the test split and log to its MLflow run.

    Writes ``metrics_path`` (JSON: mean IoU, IoU >= 0.5/0.75 shares, the mean-box
    baseline's numbers, per class, class accuracy, the SavedModel's median
    ``latency_ms`` per image, confusion matrix) and
    ``plots_dir/confusion.csv`` (``actual,predicted`` per test image, a DVC plot).

    Returns:
        The metrics dict.
    """
    import matplotlib.pyplot as plt
    import mlflow

    model_dir, plots_dir = Path(model_dir), Path(plots_dir)
    info = json.loads((model_dir / RUN_FILE).read_text())
    model = keras.models.load_model(model_dir / "model.keras")
    records = RecordSet.load(records_dir)
    class_names = info["class_names"]
    data = load_single_box_data(records, image_size=info["image_size"])
    evaluation = evaluate_single_box(
        model,
        data,
        class_names=class_names,
        train_rows=data.select("train", class_names),
        test_rows=data.select("test", class_names),
        batch_size=batch_size,
    )
    metrics = dict(evaluation.metrics)
    served_images = latency.latency_images(records, class_names=class_names)
    metrics.update(latency.measure_latency(model_dir / "saved_model", served_images))
    metrics["confusion_matrix"] = {
        "labels": class_names,
        "counts": evaluation.confusion.tolist(),
    }
    Path(metrics_path).parent.mkdir(parents=True, exist_ok=True)
    Path(metrics_path).write_text(json.dumps(metrics, indent=1))

    plots_dir.mkdir(parents=True, exist_ok=True)
    with open(plots_dir / "confusion.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["actual", "predicted"])
        for true, pred in zip(evaluation.true_classes, evaluation.pred_classes, strict=True):
            writer.writerow([class_names[true], class_names[pred]])

    tracking.configure()
    with mlflow.start_run(run_id=info["run_id"]):
        tracking.log_metrics(flat_metrics(metrics))
        mlflow.log_dict(metrics, "evaluation/metrics.json")
        figures = {"test_predictions.png": prediction_grid(data, evaluation, class_names)}
        if len(class_names) > 1:
            figures["confusion.png"] = confusion_figure(evaluation.confusion, class_names)
        for name, figure in figures.items():
            tracking.log_figure(figure, name)
            plt.close(figure)
    return metrics


def flat_metrics(metrics: Mapping) -> dict[str, float]:
    """The numeric leaves of nested metrics, named as ``dvc metrics show`` names them.

    Example:
        >>> flat_metrics({"mean_iou": 0.9, "per_class": {"airplanes": {"mean_iou": 0.8}},
        ...               "confusion_matrix": {"labels": ["airplanes"], "counts": [[3]]}})
        {'mean_iou': 0.9, 'per_class.airplanes.mean_iou': 0.8}
    """
    flat = {}
    for key, value in metrics.items():
        if isinstance(value, Mapping):
            flat.update({f"{key}.{k}": v for k, v in flat_metrics(value).items()})
        elif isinstance(value, int | float) and not isinstance(value, bool):
            flat[key] = value
    return flat
