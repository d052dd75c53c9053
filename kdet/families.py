"""The model families the experiment runner trains: one protocol, one registry.

A family is a small object with a name, its default options and three methods the runner
(:mod:`kdet.experiment`) calls: :meth:`Family.check_records` (does this dataset fit?),
:meth:`Family.train` (fit and save the model into a folder) and :meth:`Family.evaluate`
(score the saved model on the test split, export the serving SavedModel, draw figures).
Each family lives in its own package (``kdet/models/<family>/family.py``) and joins kdet by
one entry in :data:`FAMILY_MODULES`; the command line, the DVC stages, the contract tests
and the publish stages iterate over :func:`family_names`. Families are imported only when
asked for, so ``import kdet.families`` pulls in no model code (and no keras-cv).

Example:
    >>> family = get_family("yolov8")  # doctest: +SKIP
    >>> sorted(family.defaults)  # doctest: +SKIP
    ['evaluate', 'train']
    >>> family_names()
    ['bbox_regressor', 'fast_rcnn', 'multiclass', 'rcnn', 'sliding_window', 'yolov8']
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from collections.abc import Mapping
from pathlib import Path

from kdet.datasets.records import RecordSet

# family name -> "module:attribute" of its Family object (imported on first use).
FAMILY_MODULES: dict[str, str] = {
    "bbox_regressor": "kdet.models.single_box.family:BBOX_REGRESSOR",
    "multiclass": "kdet.models.single_box.family:MULTICLASS",
    "rcnn": "kdet.models.rcnn.family:RCNN",
    "fast_rcnn": "kdet.models.rcnn.family:FAST_RCNN",
    "sliding_window": "kdet.models.rcnn.family:SLIDING_WINDOW",
    "yolov8": "kdet.models.yolov8.family:YOLOV8",
    "retinanet": "kdet.models.retinanet.family:RETINANET",
}


@dataclasses.dataclass
class Evaluation:
    """What :meth:`Family.evaluate` returns to the runner.

    Attributes:
        metrics: numbers (nested dicts allowed) written to the metrics JSON and MLflow;
            detectors give ``mAP50``, ``mAP`` and ``per_class``; ``latency_ms`` when the
            family times itself (otherwise the runner times the SavedModel).
        figures: ``{file name: matplotlib figure}`` saved under the plots folder and
            logged to MLflow.
        pr_result: the :class:`kdet.metrics.DetectionResult` whose PR curves go to
            ``pr_curve.csv`` (DVC plots); ``None`` for families without them.
        tables: ``{file name: [row dict, ...]}`` written as CSV plots (e.g. a confusion
            matrix's ``actual,predicted`` rows).
        latency_classes: time the SavedModel on test images of these classes (``None``:
            all).
    """

    metrics: dict
    figures: dict = dataclasses.field(default_factory=dict)
    pr_result: object = None
    tables: dict = dataclasses.field(default_factory=dict)
    latency_classes: list | None = None


class Family:
    """The protocol every model family implements (see the module docstring).

    Attributes:
        name: registry name (``"yolov8"``).
        summary: one line for ``kdet train --help``.
        defaults: ``{"train": {...}, "evaluate": {...}}``: every option with its default;
            an experiment row overrides some of them and may name no other.
        rank_by: metric (higher is better) that picks the registered model's champion.
        one_box_per_image: the family predicts exactly one box per image.
        history_columns: the loss columns of its ``history.csv`` (DVC plots).
    """

    name: str = ""
    summary: str = ""
    defaults: Mapping[str, Mapping] = {"train": {}, "evaluate": {}}
    rank_by: str = "mAP50"
    one_box_per_image: bool = False
    history_columns: tuple[str, ...] = ("loss", "val_loss")

    def check_records(self, records: RecordSet) -> None:
        """Raise ``ValueError`` when ``records`` cannot train this family.

        Single-box families need exactly one box in every image; the message says how
        many images hold none or several and suggests a detector family.
        """
        if not self.one_box_per_image:
            return
        counts = [len(r.classes) for r in records.records]
        none, several = counts.count(0), sum(c > 1 for c in counts)
        if none or several:
            raise ValueError(
                f"dataset {records.name!r}: family {self.name!r} predicts one box per image, "
                f"but {none} of {len(counts)} images hold no box and {several} hold several; "
                "train a detector family (yolov8, fast_rcnn, rcnn, sliding_window) instead"
            )

    def train(
        self,
        records: RecordSet,
        *,
        train_dir: Path,
        history_csv: Path,
        checkpoint_dir: Path | None,
        strategy,
        init_dir: Path | None,
        **options,
    ) -> dict:
        """Train on ``records.split("train")`` and save the model into ``train_dir``.

        Args:
            records: the whole dataset (splits assigned).
            train_dir: empty output folder; what :meth:`evaluate` reads back.
            history_csv: per-epoch metrics CSV to write.
            checkpoint_dir: folder for the resumable end-of-epoch backup
                (:func:`kdet.training.fit`); ``None`` for none.
            strategy: a ``tf.distribute.Strategy``.
            init_dir: ``train_dir`` of the experiment this one starts from, or ``None``.
            **options: the experiment's ``train`` options (defaults filled in).

        Returns:
            Training numbers (seconds, final losses...) for the train metrics JSON.
        """
        raise NotImplementedError

    def evaluate(
        self, records: RecordSet, *, train_dir: Path, saved_model: Path, **options
    ) -> Evaluation:
        """Score the model in ``train_dir`` on ``records.split("test")`` and export it.

        Writes the serving SavedModel (:mod:`kdet.export` contract) to ``saved_model``.
        """
        raise NotImplementedError


def family_names() -> list[str]:
    """Names of every registered family, sorted."""
    return sorted(FAMILY_MODULES)


def get_family(name: str) -> Family:
    """The :class:`Family` registered as ``name``; ``ValueError`` listing them otherwise."""
    if name not in FAMILY_MODULES:
        raise ValueError(f"unknown model family {name!r}; available: {', '.join(family_names())}")
    module, _, attribute = FAMILY_MODULES[name].partition(":")
    return getattr(importlib.import_module(module), attribute)


def merge_options(defaults: Mapping, overrides: Mapping | None, where: str | os.PathLike) -> dict:
    """``defaults`` updated by ``overrides``, refusing keys ``defaults`` lacks.

    Nested dicts merge key by key. ``where`` names the overrides in the error
    (e.g. ``params.yaml experiments.yolov8_raccoon.train``).

    Example:
        >>> merge_options({"epochs": 10, "decoder": {"iou": 0.5}}, {"decoder": {"iou": 0.6}}, "x")
        {'epochs': 10, 'decoder': {'iou': 0.6}}
    """
    merged = dict(defaults)
    for key, value in (overrides or {}).items():
        if key not in defaults:
            allowed = ", ".join(sorted(defaults)) or "none"
            raise ValueError(f"{where}.{key}: unknown option {key!r} (allowed: {allowed})")
        if isinstance(defaults[key], Mapping) and isinstance(value, Mapping):
            merged[key] = merge_options(defaults[key], value, f"{where}.{key}")
        else:
            merged[key] = value
    return merged
