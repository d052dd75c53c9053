"""The RetinaNet family (KerasHub) for the experiment runner (:mod:`kdet.experiment`).

Trains KerasHub's ``RetinaNetObjectDetector`` with
:func:`~kdet.models.retinanet.train.train_retinanet`, saves ``model.keras`` and evaluates
with kdet's COCO-style evaluator (PR curves, per-class precision and recall, the detection
confusion matrix: :func:`kdet.models.detector_evaluation.detector_evaluation`), exporting
the serving SavedModel (in-graph decoding + NMS). It joins kdet by its package and one line of
``kdet.families.FAMILY_MODULES``; it needs the ``hub`` extra (``pip install kdet[hub]``).
An experiment that starts from another (``init_from``) loads that model's weights when the
classes match (a KerasHub preset folder also works, through ``weights``, and so does a
pretrained :mod:`kdet.zoo` RetinaNet: ``weights: zoo:NAME``, or ``--init zoo:NAME``).

Example:
    >>> from kdet.families import get_family
    >>> get_family("retinanet").defaults["train"]["backbone"]  # doctest: +SKIP
    'resnet_tiny'
"""

from __future__ import annotations

import time
from pathlib import Path

import keras

from kdet.datasets.records import RecordSet
from kdet.families import Evaluation, Family
from kdet.models.detector_evaluation import detector_evaluation
from kdet.models.retinanet.builder import BACKBONES
from kdet.models.retinanet.evaluate import evaluate_retinanet, export_retinanet
from kdet.models.retinanet.train import train_retinanet

MODEL_FILE = "model.keras"


class RetinaNetFamily(Family):
    """KerasHub RetinaNet (small ResNet + FPN from scratch, or a KerasHub preset)."""

    name = "retinanet"
    presets_module = "kdet.models.retinanet.presets"
    deploys_keras_model = True  # its KerasHub NMS converts to neither ONNX nor LiteRT
    summary = "KerasHub RetinaNet (small ResNet-FPN from scratch, or a KerasHub preset)"
    choices = {**Family.choices, "backbone": tuple(BACKBONES)}
    history_columns = ("loss", "bbox_regression_loss", "cls_logits_loss")
    defaults = {
        "train": {
            "backbone": "resnet_tiny",
            "weights": None,
            "image_size": 128,
            "batch_size": 8,
            "epochs": 40,
            "learning_rate": 1e-3,
            "head_conv_layers": 2,
            "augment": True,
            "precision": "float32",
            "jit_compile": False,
            "seed": 0,
        },
        "evaluate": {
            "batch_size": 8,
            "decoder": {"confidence_threshold": 0.001, "iou_threshold": 0.5, "max_detections": 100},
            "export_decoder": {
                "confidence_threshold": 0.25,
                "iou_threshold": 0.5,
                "max_detections": 100,
            },
        },
    }

    def train(
        self, records, *, train_dir, history_csv, checkpoint_dir, strategy, init_dir, **options
    ):
        start = time.perf_counter()
        if init_dir is not None:
            options = {**options, "weights": _init_preset(Path(init_dir), Path(train_dir))}
        model, history = train_retinanet(
            records.split("train"),
            None,
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
            "final_box_loss": history["bbox_regression_loss"][-1],
            "final_class_loss": history["cls_logits_loss"][-1],
        }

    def evaluate(self, records: RecordSet, *, train_dir, saved_model, **options) -> Evaluation:
        test = records.split("test")
        model = keras.saving.load_model(Path(train_dir) / MODEL_FILE)
        result, predictions = evaluate_retinanet(
            model, test, batch_size=options["batch_size"], **options["decoder"]
        )
        export_retinanet(model, saved_model, records.class_names, **options["export_decoder"])
        # As YOLOv8's: PR curves from the low-threshold decoder; per-class precision and
        # recall, the confusion matrix (confusion.csv) and the grid at the served threshold.
        return detector_evaluation(
            test,
            predictions,
            result,
            operating_threshold=options["export_decoder"]["confidence_threshold"],
        )


def _init_preset(init_dir: Path, train_dir: Path) -> str:
    """The ``init_from`` experiment's model as a KerasHub preset folder (its backbone,
    and its head when the classes match) for :func:`build_retinanet`'s ``weights``."""
    preset = train_dir / "init_preset"
    keras.saving.load_model(init_dir / MODEL_FILE).save_to_preset(str(preset))
    return str(preset)


RETINANET = RetinaNetFamily()
