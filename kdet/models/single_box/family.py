"""The single-box families for the experiment runner: the bbox regressor and the
multi-class model (one box per image, the tutorials' VGG16 heads).

Training (:func:`~kdet.models.single_box.train.train_single_box`) saves ``model.keras``
and ``model_info.json`` (classes, input size, timings) and logs the Keras model to the
run; evaluation reports mean IoU next to the mean-box baseline, per class, class accuracy
and a confusion matrix, and exports the serving SavedModel.

Example:
    >>> from kdet.families import get_family
    >>> get_family("multiclass").defaults["train"]["model"]["backbone"]
    'small_cnn'
"""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np

from kdet.families import Evaluation, Family
from kdet.models.single_box.data import load_single_box_data
from kdet.models.single_box.evaluate import (
    confusion_figure,
    evaluate_single_box,
    prediction_grid,
)
from kdet.models.single_box.serving import export_single_box_model
from kdet.models.single_box.train import train_single_box

MODEL_FILE = "model.keras"
INFO_FILE = "model_info.json"

TRAIN_DEFAULTS = {
    "classes": None,  # train on these classes only (None: all of the dataset's)
    "image_size": [128, 128],
    "epochs": 30,
    "batch_size": 16,
    "validation_fraction": 0.1,
    "augment": True,
    "crop": 0.1,
    "cosine_decay": True,
    "start_at_mean_box": True,
    "precision": "float32",
    "seed": 42,
    "early_stopping_patience": None,
    "feature_cache_dir": "data/features",
}
MODEL_DEFAULTS = {
    "backbone": "small_cnn",
    "weights": None,
    "trainable_blocks": "all",
    "box_units": [128, 64, 32],
    "box_loss": "giou",
    "learning_rate": 0.001,
}


class SingleBoxFamily(Family):
    """A backbone with dense heads that predicts one box (and class) per image."""

    one_box_per_image = True
    rank_by = "mean_iou"

    def __init__(self, name: str, model: str, summary: str, defaults: dict, columns=()):
        self.name = name
        self.model = model
        self.summary = summary
        self.defaults = defaults
        self.history_columns = ("loss", "val_loss", *columns)

    def train(
        self, records, *, train_dir, history_csv, checkpoint_dir, strategy, init_dir, **options
    ):
        import mlflow
        from mlflow.models import infer_signature

        options = dict(options)
        class_names = options.pop("classes")
        result = train_single_box(
            records,
            model=self.model,
            class_names=class_names,
            model_options=options.pop("model"),
            image_size=tuple(options.pop("image_size")),
            checkpoint_dir=checkpoint_dir,
            history_csv=history_csv,
            log_to_mlflow=True,
            strategy=strategy,
            verbose=2,
            **options,
        )
        model = result.model
        model.save(Path(train_dir) / MODEL_FILE)
        info = {
            "class_names": result.class_names,
            "image_size": list(model.input_shape[1:3]),
            **result.info,
        }
        (Path(train_dir) / INFO_FILE).write_text(json.dumps(info, indent=1))
        example = result.data.images[result.train_rows[:2]].astype(np.float32)
        # A direct call, not predict: under a multi-worker strategy predict would wait for
        # the other workers, which do not log models.
        outputs = {k: np.asarray(v) for k, v in model(example, training=False).items()}
        if mlflow.active_run():  # not on the other workers of a cluster
            signature = infer_signature(example, outputs)
            mlflow.keras.log_model(model, name="model", signature=signature)
        last_epoch = {name: values[-1] for name, values in result.history.items() if values}
        return {**last_epoch, **{f"train_{k}": v for k, v in result.info.items()}}

    def evaluate(self, records, *, train_dir, saved_model, batch_size=64) -> Evaluation:
        info = json.loads((Path(train_dir) / INFO_FILE).read_text())
        model = keras.models.load_model(Path(train_dir) / MODEL_FILE)
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
        export_single_box_model(model, saved_model, class_names)
        metrics = dict(evaluation.metrics)
        metrics["confusion_matrix"] = {
            "labels": class_names,
            "counts": evaluation.confusion.tolist(),
        }
        figures = {"test_predictions.png": prediction_grid(data, evaluation, class_names)}
        if len(class_names) > 1:
            figures["confusion.png"] = confusion_figure(evaluation.confusion, class_names)
        return Evaluation(
            metrics=metrics,
            figures=figures,
            tables={
                "confusion.csv": [
                    {"actual": class_names[t], "predicted": class_names[p]}
                    for t, p in zip(evaluation.true_classes, evaluation.pred_classes, strict=True)
                ]
            },
            latency_classes=class_names,
        )


BBOX_REGRESSOR = SingleBoxFamily(
    "bbox_regressor",
    "bbox_regressor",
    "backbone + dense head, one box per image (e.g. Caltech-101 airplanes)",
    {
        "train": {**TRAIN_DEFAULTS, "model": MODEL_DEFAULTS},
        "evaluate": {"batch_size": 64},
    },
)
MULTICLASS = SingleBoxFamily(
    "multiclass",
    "multiclass_detector",
    "backbone + box head + softmax class head, one box per image",
    {
        "train": {
            **TRAIN_DEFAULTS,
            "model": {
                **MODEL_DEFAULTS,
                "class_units": [512, 512],
                "class_dropout": 0.5,
                "loss_weights": {"bounding_box": 1.0, "class_label": 1.0},
            },
        },
        "evaluate": {"batch_size": 64},
    },
    columns=("bounding_box_loss", "class_label_loss"),
)
