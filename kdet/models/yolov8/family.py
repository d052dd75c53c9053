"""The YOLOv8 family for the experiment runner (:mod:`kdet.experiment`).

Trains KerasCV's ``YOLOV8Detector`` with :func:`~kdet.models.yolov8.train.train_yolov8`,
saves ``model.keras``, and evaluates with kdet's COCO-style evaluator, PR curves, per-class
precision/recall and a confusion matrix at the serving threshold, a prediction grid and the
serving SavedModel (in-graph decoding + NMS). An experiment that
starts from another (``init_from``) copies that model's backbone and neck; ``weights:
zoo:NAME`` (``kdet train yolov8 --init zoo:NAME``) starts from a pretrained :mod:`kdet.zoo`
model the same way, its head too when the class count matches.

Example:
    >>> from kdet.families import get_family
    >>> get_family("yolov8").defaults["train"]["backbone_size"]
    'xs'
"""

from __future__ import annotations

import time
from pathlib import Path

import keras

from kdet.datasets.records import RecordSet
from kdet.families import Evaluation, Family
from kdet.models.detector_evaluation import detector_evaluation
from kdet.models.yolov8.builder import BACKBONE_SIZES
from kdet.models.yolov8.evaluate import evaluate_yolov8
from kdet.models.yolov8.export import export_yolov8
from kdet.models.yolov8.recipe import RECIPES
from kdet.models.yolov8.train import train_yolov8

MODEL_FILE = "model.keras"


class YOLOv8Family(Family):
    """KerasCV YOLOv8 on any multi-class detection dataset."""

    name = "yolov8"
    presets_module = "kdet.models.yolov8.presets"
    deploys_keras_model = True  # its KerasCV NMS converts to neither ONNX nor LiteRT
    summary = "KerasCV YOLOv8 (GPU when present)"
    history_columns = ("loss", "box_loss", "class_loss")
    choices = {
        **Family.choices,
        "precision": ("auto", "float32"),  # KerasCV's YOLOv8 loss fails under mixed policies
        "backbone_size": tuple(BACKBONE_SIZES),
        "recipe": tuple(RECIPES),
    }

    def check_options(self, options, where):
        super().check_options(options, where)
        size = options["train"]["image_size"]
        if any(side % 32 for side in (size if isinstance(size, list | tuple) else [size])):
            raise ValueError(
                f"{where}.train.image_size: {size!r} is not allowed: YOLOv8 needs multiples "
                "of 32 (its strides go to 32)"
            )

    defaults = {
        "train": {
            "recipe": "kdet",
            "backbone_size": "xs",
            "weights": None,
            "image_size": 256,
            "batch_size": 8,
            "epochs": 60,
            "precision": "auto",
            "jit_compile": False,
            "seed": 0,
        },
        "evaluate": {
            "batch_size": 8,
            "decoder": {"confidence_threshold": 0.001, "iou_threshold": 0.6, "max_detections": 100},
            "export_decoder": {
                "confidence_threshold": 0.25,
                "iou_threshold": 0.6,
                "max_detections": 100,
            },
        },
    }

    def train(
        self, records, *, train_dir, history_csv, checkpoint_dir, strategy, init_dir, **options
    ):
        start = time.perf_counter()
        model, history = train_yolov8(
            records.split("train"),
            None,
            init_from=None if init_dir is None else Path(init_dir) / MODEL_FILE,
            checkpoint_dir=checkpoint_dir,
            history_csv=history_csv,
            log_to_mlflow=True,
            strategy=strategy,
            **options,
        )
        model.save(Path(train_dir) / MODEL_FILE)
        return {
            "train_seconds": time.perf_counter() - start,
            "final_loss": history["loss"][-1],
            "final_box_loss": history["box_loss"][-1],
            "final_class_loss": history["class_loss"][-1],
            "train_images_per_s": history["images_per_s"][-1],
        }

    def evaluate(self, records: RecordSet, *, train_dir, saved_model, **options) -> Evaluation:
        test = records.split("test")
        model = keras.saving.load_model(Path(train_dir) / MODEL_FILE)
        result, predictions = evaluate_yolov8(
            model,
            test,
            image_size=tuple(model.input_shape[1:3]),
            batch_size=options["batch_size"],
            **options["decoder"],
        )
        export_yolov8(model, saved_model, records.class_names, **options["export_decoder"])
        # The predictions come from the low-threshold evaluation decoder (complete PR
        # curves); the per-class numbers, confusion matrix and grid keep those at or above
        # the served threshold: NMS keeps boxes best score first, so with the same NMS
        # settings (the defaults) these are the detections the SavedModel serves.
        return detector_evaluation(
            test,
            predictions,
            result,
            operating_threshold=options["export_decoder"]["confidence_threshold"],
        )


YOLOV8 = YOLOv8Family()
