"""The R-CNN, Fast R-CNN and sliding-window families for the experiment runner.

All three train on selective-search proposals of the training images (computed once per
dataset and setting, cached under ``proposals.cache_dir``, and copied into the model folder
so evaluation uses the same boxes and search times). R-CNN classifies crops of every
proposal, Fast R-CNN runs the backbone once and pools every proposal, and the
sliding-window detector runs the R-CNN classifier over an image pyramid; it trains its own
classifier, or reuses an R-CNN experiment's (``init_from``), moves each window by the
classifier's box correction as R-CNN moves its proposals, and picks its window setting from
``window_grid`` by mAP50 on the validation images (``windows_on_validation``).

R-CNN's classifier trains by ``labelling: paper`` (Girshick et al. 2014: IoU >= 0.5
positives, hard and random background, per-class box regression) or ``labelling:
tutorial`` (the tutorial's rule, classification only); its detector, and Fast R-CNN's,
serves the score threshold with the best F1 on the validation images held out in training
(``threshold_on_validation``), recorded as the ``operating_threshold`` metric. With
``hard_negative_mining.rounds`` > 0 the classifier trains further rounds on its own false
positives; an R-CNN row with ``init_from`` starts those rounds from that row's classifier.

Example:
    >>> from kdet.families import get_family
    >>> get_family("rcnn").defaults["train"]["input_size"]
    48
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import keras

from kdet import atomic
from kdet.datasets.records import RecordSet
from kdet.export import export_detector, export_proposal_detector
from kdet.families import Evaluation, Family
from kdet.models.detector_evaluation import detector_evaluation
from kdet.models.rcnn.detector import RCNNDetector
from kdet.models.rcnn.evaluation import (
    EvaluationReport,
    evaluate_detector,
    pick_score_threshold,
)
from kdet.models.rcnn.fast_rcnn import FastRCNNDetector, train_fast_rcnn
from kdet.models.rcnn.proposals import load_proposals, propose_records, save_proposals
from kdet.models.rcnn.train import LABELLING, MINING_DEFAULTS, train_rcnn_classifier
from kdet.models.sliding_window import (
    WINDOW_KEYS,
    SlidingWindowDetector,
    check_window_setting,
    select_windows,
    window_candidates,
)

MODEL_FILE = "model.keras"
PROPOSALS_FILE = "proposals.npz"
SECONDS_FILE = "proposal_seconds.json"
VALIDATION_FILE = "validation_images.json"

PROPOSAL_DEFAULTS = {
    "mode": "fast",
    "max_side": 300,
    "seed": 0,
    "processes": 2,
    "cache_dir": "data/features/proposals",
}
CLASSIFIER_DEFAULTS = {
    "backbone": "small_cnn",
    "input_size": 48,
    "epochs": 15,
    "batch_size": 32,
    "learning_rate": 0.001,
    "validation_fraction": 0.1,
    "augment": True,
    "seed": 42,
    "labelling": "paper",
    # kdet.models.rcnn.labelling.label_proposals_paper (Girshick et al. 2014)
    "paper": {
        "positive_iou": 0.5,
        "background_iou": 0.1,
        "positive_fraction": 0.25,
        "hard_negative_fraction": 0.75,
        "max_positives": 16,
        "max_negatives": 48,
        "add_ground_truth": True,
    },
    # kdet.models.rcnn.labelling.label_proposals (the tutorial's rule)
    "tutorial": {
        "positive_iou": 0.7,
        "negative_iou": 0.05,
        "max_positives": 30,
        "max_negatives": 10,
    },
    "box_loss_weight": 1.0,
    # kdet.models.rcnn.train.mine_hard_negatives: rounds > 0 trains on the false positives
    "hard_negative_mining": MINING_DEFAULTS,
}
DETECTOR_DEFAULTS = {
    "score_threshold": 0.5,
    "iou_threshold": 0.3,
    "max_detections": 20,
    "max_proposals": None,
}


def cached_proposals(records: RecordSet, train_dir: Path, **setting) -> dict:
    """Selective search over every image of ``records``, cached across experiments.

    The cache key is the records' fingerprint and the search setting; the result is also
    copied into ``train_dir`` (``proposals.npz`` + ``proposal_seconds.json``).

    Returns:
        ``{image: (N, 4) xyxy}`` for every record.
    """
    setting = dict(setting)
    cache_dir = setting.pop("cache_dir")
    processes = setting.pop("processes")
    key = json.dumps([records.fingerprint(), sorted(setting.items())])
    folder = Path(cache_dir) / _short_hash(key)
    if not (folder / SECONDS_FILE).exists():
        proposals, timing = propose_records(records, processes=processes, **setting)
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".proposals-", dir=folder.parent))
        save_proposals(staging / PROPOSALS_FILE, proposals)
        (staging / SECONDS_FILE).write_text(json.dumps(timing["seconds"]))
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(staging, folder)
    for name in (PROPOSALS_FILE, SECONDS_FILE):
        shutil.copy2(folder / name, Path(train_dir) / name)
    return load_proposals(Path(train_dir) / PROPOSALS_FILE)


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _evaluation(
    report: EvaluationReport, records: RecordSet, score_threshold: float, **metrics
) -> Evaluation:
    """The runner's :class:`Evaluation` of an :class:`EvaluationReport` on the test split,
    at the ``score_threshold`` its SavedModel serves, ``metrics`` added to the report's."""
    return detector_evaluation(
        records.split("test"),
        report.detections,
        report.result,
        operating_threshold=score_threshold,
        metrics={**report.as_metrics(), **metrics},
    )


def _validation_records(records: RecordSet, train_dir: Path, option: str) -> RecordSet:
    """The training images held out for validation when ``train_dir``'s model trained;
    ``option`` (``"threshold_on_validation"``) names the option that needs them."""
    path = Path(train_dir) / VALIDATION_FILE
    if not path.exists():
        raise FileNotFoundError(
            f"{path}: no list of validation images for evaluate.{option}; retrain, "
            f"or set evaluate.{option}: false"
        )
    names = set(json.loads(path.read_text()))
    if not names:
        raise ValueError(
            f"evaluate.{option}: true needs validation images; set "
            f"train.validation_fraction above 0 (it is 0), or {option}: false"
        )
    held_out = [r for r in records.split("train").records if r.image in names]
    return dataclasses.replace(records.split("train"), records=held_out)


def _operating_threshold(
    report: EvaluationReport, held_out: RecordSet, floor: float
) -> tuple[float, dict]:
    """The score threshold to serve: the best validation F1's (never below ``floor``, the
    evaluation's ``score_threshold``), and the numbers to log with it."""
    picked, f1 = pick_score_threshold(report, held_out)
    return max(picked, floor), {"validation_f1": f1, "validation_images": len(held_out)}


def _stored_proposals(train_dir: Path) -> tuple[dict, dict]:
    proposals = load_proposals(Path(train_dir) / PROPOSALS_FILE)
    seconds = json.loads((Path(train_dir) / SECONDS_FILE).read_text())
    return proposals, seconds


class RCNNFamily(Family):
    """Selective-search proposals + a CNN classifier of their crops + per-class NMS."""

    name = "rcnn"
    summary = "selective-search proposals + CNN classifier + NMS"
    choices = {**Family.choices, "labelling": LABELLING}
    defaults = {
        "train": {**CLASSIFIER_DEFAULTS, "proposals": PROPOSAL_DEFAULTS},
        # score_threshold: the evaluation's floor; the SavedModel serves the threshold
        # picked on the validation images (threshold_on_validation: true) or this one.
        "evaluate": {
            **DETECTOR_DEFAULTS,
            "score_threshold": 0.05,
            "regress": True,
            "threshold_on_validation": True,
        },
    }
    deploy_refusals = {
        "litert": (
            "not supported for R-CNN / Fast R-CNN: tf.image.crop_and_resize (R-CNN's crops, "
            "Fast R-CNN's RoIAlign) has no TFLite builtin kernel, only the Select TF op "
            "CropAndResize, which the ai_edge_litert interpreter cannot run; export ONNX, "
            "or serve the SavedModel with kdet.predict.Detector"
        )
    }

    #: the training function (records, proposals, **options) -> (model, info)
    fit_model = staticmethod(train_rcnn_classifier)

    def train(
        self, records, *, train_dir, history_csv, checkpoint_dir, strategy, init_dir, **options
    ):
        proposals = cached_proposals(records, train_dir, **options.pop("proposals"))
        if init_dir is not None:  # its classifier stands for the first round (mining goes on)
            if self.fit_model is not train_rcnn_classifier:
                raise ValueError(f"family {self.name!r} cannot start from another experiment")
            options["initial_model"] = Path(init_dir) / MODEL_FILE
        model, info = self.fit_model(
            records.split("train"),
            proposals,
            checkpoint_dir=checkpoint_dir,
            history_csv=history_csv,
            log_to_mlflow=True,
            strategy=strategy,
            **options,
        )
        model.save(Path(train_dir) / MODEL_FILE)
        if "validation_images" in info:
            (Path(train_dir) / VALIDATION_FILE).write_text(json.dumps(info["validation_images"]))
        history = info["history"]
        crops = {
            f"crops.{split}.{label}": n
            for split, c in info.get("crops", {}).items()
            for label, n in c.items()
        }
        for round_index, count in enumerate(info.get("mined_negatives", []), start=1):
            crops[f"mined_negatives.round_{round_index}"] = count
        # a multi-output classifier names its accuracy after the class output
        keys = ("val_class_label_accuracy", "val_accuracy", "class_label_accuracy", "accuracy")
        accuracy = history[next(key for key in keys if key in history)][-1]
        return {"final_loss": history["loss"][-1], "class_accuracy": accuracy, **crops}

    def proposal_settings(self, train_options):
        settings = train_options["proposals"]
        return {key: settings[key] for key in ("mode", "max_side", "seed")}

    def detector(self, model, **options):
        """The detector object the evaluation runs (image + proposals -> detections)."""
        return RCNNDetector(model, **options)

    def evaluate(
        self, records, *, train_dir, saved_model, threshold_on_validation=False, **options
    ) -> Evaluation:
        """mAP at ``score_threshold`` on the test split; with ``threshold_on_validation``, the
        SavedModel serves the threshold with the best F1 on the validation images."""
        model = keras.saving.load_model(Path(train_dir) / MODEL_FILE)
        detector = self.detector(model, **options)
        proposals, seconds = _stored_proposals(train_dir)
        report = evaluate_detector(
            detector, records.split("test"), proposals=proposals, proposal_seconds=seconds
        )
        served, extra = detector, {}
        if threshold_on_validation:
            held_out = _validation_records(records, train_dir, "threshold_on_validation")
            threshold, extra = _operating_threshold(
                evaluate_detector(detector, held_out, proposals=proposals),
                held_out,
                options["score_threshold"],
            )
            served = self.detector(model, **{**options, "score_threshold": threshold})
        export_proposal_detector(saved_model, served.detect_eager, records.class_names, model)
        return _evaluation(report, records, served.score_threshold, **extra)


class FastRCNNFamily(RCNNFamily):
    """One backbone pass per image + RoIAlign over the proposals + class and box heads."""

    name = "fast_rcnn"
    summary = "one backbone pass + RoIAlign over selective-search proposals"
    history_columns = ("loss", "val_loss", "class_label_loss", "box_delta_loss")
    defaults = {
        "train": {
            "backbone": "small_cnn",
            "image_size": 192,
            "pool_size": 7,
            "dense_units": 256,
            # from scratch it calls every region background for its first 10-16 epochs:
            # raccoon mAP@0.5 0.518 at 30 epochs, 0.628 at 60 (3 seeds; README, Fast R-CNN)
            "epochs": 60,
            "batch_size": 8,
            "learning_rate": 0.001,
            "rois_per_image": 32,
            "positive_fraction": 0.25,
            "samples_per_image": 2,
            "validation_fraction": 0.1,
            "augment": True,
            "seed": 42,
            "proposals": PROPOSAL_DEFAULTS,
        },
        # R-CNN's: mAP above the floor 0.05, the SavedModel serves the best validation F1's
        "evaluate": {**RCNNFamily.defaults["evaluate"]},
    }

    fit_model = staticmethod(train_fast_rcnn)

    def detector(self, model, **options):
        return FastRCNNDetector(model, **options)


class SlidingWindowFamily(RCNNFamily):
    """The R-CNN classifier over an image pyramid of windows + NMS (no proposals)."""

    name = "sliding_window"
    summary = "the R-CNN classifier over an image pyramid of windows + NMS"
    defaults = {
        "train": {**CLASSIFIER_DEFAULTS, "proposals": PROPOSAL_DEFAULTS},
        # window_size, step, scale, image_side: the windows when windows_on_validation is
        # false; true picks them from window_grid (every combination of its lists) by
        # mAP50 on the validation images. score_threshold: the evaluation's floor; the
        # SavedModel serves the best validation F1's (threshold_on_validation) or this one.
        "evaluate": {
            "window_size": [64, 64],
            "step": 16,
            "scale": 1.5,
            "image_side": 300,
            "windows_on_validation": True,
            # 12 candidates, about a minute on 16 raccoon validation images (2 CPU cores)
            "window_grid": {
                "window_size": [[64, 64], [96, 96], [128, 128]],
                "step": [16, 32],
                "scale": [1.25, 1.5],
                "image_side": [300],
            },
            "score_threshold": 0.05,
            "threshold_on_validation": True,
            "regress": True,
            "iou_threshold": 0.3,
            "max_detections": 20,
            "batch_size": 256,
        },
    }
    deploy_refusals = dict.fromkeys(
        ("onnx", "litert"),
        "not supported for the sliding-window detector: its image pyramid of windows is a "
        "TensorList while loop that neither ONNX (tf2onnx) nor LiteRT builtin ops hold; "
        "serve the SavedModel with kdet.predict.Detector",
    )

    def check_options(self, options, where):
        """Also refuse a bad window setting or ``window_grid``, naming the option."""
        super().check_options(options, where)
        evaluate = options["evaluate"]
        check_window_setting({key: evaluate[key] for key in WINDOW_KEYS}, f"{where}.evaluate.")
        try:
            window_candidates(evaluate["window_grid"])
        except ValueError as error:
            raise ValueError(f"{where}.evaluate.{error}") from None

    def proposal_settings(self, train_options):
        return None  # windows, not proposals

    def train(self, records, *, train_dir, init_dir, **kwargs):
        """Train the window classifier, or take it (and the list of the validation images it
        held out) from the R-CNN experiment ``init_dir``."""
        if init_dir is None:
            return super().train(records, train_dir=train_dir, init_dir=None, **kwargs)
        source = Path(init_dir) / MODEL_FILE
        if not source.exists():
            raise FileNotFoundError(f"{source}: no R-CNN classifier to start from")
        atomic.copy_file(source, Path(train_dir) / MODEL_FILE)
        if (Path(init_dir) / VALIDATION_FILE).exists():
            atomic.copy_file(Path(init_dir) / VALIDATION_FILE, Path(train_dir) / VALIDATION_FILE)
        return {"classifier_from": str(init_dir)}

    def evaluate(
        self,
        records,
        *,
        train_dir,
        saved_model,
        windows_on_validation=False,
        window_grid=None,
        threshold_on_validation=False,
        **options,
    ) -> Evaluation:
        """mAP on the test split with the fixed windows or those picked from
        ``window_grid`` on the validation images; the SavedModel serves them at the score
        threshold with the best validation F1 (``threshold_on_validation``)."""
        classifier = keras.saving.load_model(Path(train_dir) / MODEL_FILE)
        setting = {key: options.pop(key) for key in WINDOW_KEYS}
        validation, extra = None, {}
        if windows_on_validation:
            held_out = _validation_records(records, train_dir, "windows_on_validation")
            candidates = window_candidates(window_grid)
            selection = select_windows(classifier, held_out, candidates, **options)
            setting, validation = selection.setting, selection.report
            extra["window_selection"] = selection.as_metrics()
        detector = SlidingWindowDetector(classifier, **setting, **options)
        report = evaluate_detector(detector, records.split("test"))
        served = detector
        if threshold_on_validation:
            held_out = _validation_records(records, train_dir, "threshold_on_validation")
            if validation is None:  # the window selection scored the chosen setting
                validation = evaluate_detector(detector, held_out)
            threshold, numbers = _operating_threshold(
                validation, held_out, options["score_threshold"]
            )
            extra.update(numbers)
            served = SlidingWindowDetector(
                classifier, **setting, **{**options, "score_threshold": threshold}
            )
        export_detector(saved_model, served.detect_eager, records.class_names, classifier)
        return _evaluation(report, records, served.score_threshold, **extra)


RCNN = RCNNFamily()
FAST_RCNN = FastRCNNFamily()
SLIDING_WINDOW = SlidingWindowFamily()
