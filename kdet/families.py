"""The model families the experiment runner trains: one protocol, one registry.

A family is a small object with a name, its default options and three methods the runner
(:mod:`kdet.experiment`) calls: :meth:`Family.check_records` (does this dataset fit?),
:meth:`Family.train` (fit and save the model into a folder) and :meth:`Family.evaluate`
(score the saved model on the test split, export the serving SavedModel, draw figures);
:meth:`Family.deploy_source` tells ``kdet export --format onnx,litert`` what to convert.
Each family lives in its own package (``kdet/models/<family>/family.py``) and joins kdet by
one entry in :data:`FAMILY_MODULES`; the command line, the DVC stages, the contract tests
and the publish stages iterate over :func:`family_names`. Families are imported only when
asked for, so ``import kdet.families`` pulls in no model code (and no keras-cv).

Example:
    >>> family = get_family("yolov8")  # doctest: +SKIP
    >>> sorted(family.defaults)  # doctest: +SKIP
    ['evaluate', 'train']
    >>> family_names()
    ['bbox_regressor', 'fast_rcnn', 'multiclass', 'rcnn', 'retinanet', 'sliding_window', 'yolov8']
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from collections.abc import Mapping, Sequence
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
            detectors give ``mAP50``, ``mAP``, ``AP50/CLASS``, ``AP/CLASS`` and
            ``per_class`` (precision, recall, AP50 at the operating threshold);
            ``latency_ms`` when the family times itself (otherwise the runner times the
            SavedModel).
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
        deploy_refusals: ``{format: why}`` for the formats its model cannot take.
        presets_module: where its pretrained presets load (:mod:`kdet.zoo`), or ``None``.
    """

    name: str = ""
    summary: str = ""
    defaults: Mapping[str, Mapping] = {"train": {}, "evaluate": {}}
    rank_by: str = "mAP50"
    one_box_per_image: bool = False
    history_columns: tuple[str, ...] = ("loss", "val_loss")
    #: ``{format: why}`` for the formats (``"onnx"``, ``"litert"``) this family's model
    #: does not convert to (empty: it converts to both). ``kdet export`` fails with the
    #: reason; the ``export@NAME`` stage records it in ``export/export.json`` instead of
    #: failing (:mod:`kdet.deploy.artifacts`).
    deploy_refusals: Mapping[str, str] = {}
    #: its ONNX / LiteRT exports convert the trained Keras model (``model.keras``) without
    #: NMS rather than the serving SavedModel (whose KerasCV / KerasHub NMS converts to
    #: neither); the runtime then does NMS with the SavedModel's ``export_decoder`` settings
    deploys_keras_model: bool = False
    #: the module that loads, saves and runs this family's pretrained presets
    #: (``load_preset``, ``save_preset``, ``make_detect_fn``; :mod:`kdet.zoo`), or ``None``.
    presets_module: str | None = None

    #: option name -> allowed values, checked wherever the name appears in the options.
    choices: Mapping[str, tuple] = {
        "strategy": ("auto", "default", "mirrored", "multi_worker"),
        "precision": ("auto", "float32", "mixed_bfloat16", "mixed_float16"),
        "backbone": ("vgg16", "mobilenet_v2", "small_cnn"),
    }

    def check_options(self, options: Mapping, where: str) -> None:
        """Raise ``ValueError`` naming ``where.KEY``, the value and what is allowed, for an
        option no training could use: a non-positive ``epochs``, ``batch_size`` or
        ``learning_rate``, a fraction or threshold outside ``[0, 1]``, a bad image size, a
        value outside :attr:`choices`, or a value of another type than its default's.

        Example:
            >>> get_family("yolov8").check_options({"train": {"epochs": 0}}, "x")
            Traceback (most recent call last):
            ...
            ValueError: x.train.epochs: 0 is not allowed: a whole number >= 1
        """
        for key, value in options.items():
            check_option(f"{where}.{key}", key, value, self.choices)

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

    def deploy_source(
        self, *, train_dir: Path, saved_model: Path, class_names: Sequence[str], options: Mapping
    ) -> tuple[object, dict]:
        """What :func:`kdet.deploy.export` converts for ONNX / LiteRT, and its keyword
        arguments: here the serving SavedModel (deploy refuses the graphs it cannot convert,
        e.g. R-CNN's proposals); with :attr:`deploys_keras_model` (YOLOv8, RetinaNet), the
        trained Keras model.

        Args:
            train_dir: the trained model's folder.
            saved_model: the serving SavedModel folder :meth:`evaluate` wrote.
            class_names: the dataset's class names, by class id.
            options: the experiment's ``evaluate`` options.

        Example:
            >>> get_family("bbox_regressor").deploy_source(
            ...     train_dir=Path("t"), saved_model=Path("s"), class_names=["a"], options={})
            ('s', {})
        """
        if not self.deploys_keras_model:
            return str(saved_model), {}
        import keras

        model = keras.saving.load_model(Path(train_dir) / "model.keras")
        return model, {"class_names": list(class_names), **options["export_decoder"]}

    def proposal_settings(self, train_options: Mapping) -> dict | None:
        """The selective-search settings its served model computes proposals with (R-CNN,
        Fast R-CNN: those it trained and was evaluated with), or ``None``: it takes none.

        Example:
            >>> get_family("rcnn").proposal_settings({"proposals": {"mode": "single",
            ...     "max_side": 200, "seed": 0, "processes": 2, "cache_dir": "c"}})
            {'mode': 'single', 'max_side': 200, 'seed': 0}
            >>> get_family("yolov8").proposal_settings({}) is None
            True
        """
        return None


_POSITIVE_INTEGERS = (
    "epochs",
    "batch_size",
    "max_detections",
    "samples_per_image",
    "max_per_image",
)


def check_option(where: str, key: str, value, choices: Mapping[str, tuple] = {}) -> None:  # noqa: B006
    """Check one option (recursively for dicts); see :meth:`Family.check_options`."""

    def refuse(allowed: str):
        raise ValueError(f"{where}: {value!r} is not allowed: {allowed}")

    if isinstance(value, Mapping):
        for name, inner in value.items():
            check_option(f"{where}.{name}", name, inner, choices)
        return
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if key in choices and value not in choices[key]:
        refuse(f"one of {', '.join(map(repr, choices[key]))}")
    whole = isinstance(value, int) and not isinstance(value, bool)
    if key in _POSITIVE_INTEGERS and (not whole or value < 1):
        refuse("a whole number >= 1")
    if key == "rounds" and (not whole or value < 0):
        refuse("a whole number >= 0")
    if key == "learning_rate" and (not number or value <= 0):
        refuse("a number > 0")
    if (key.endswith("_fraction") or key.endswith("_threshold") or key.endswith("_iou")) and (
        not number or not 0 <= value <= 1
    ):
        refuse("a number in [0, 1]")
    if key == "validation_fraction" and value >= 1:
        refuse("a number in [0, 1)")
    if key in ("image_size", "input_size"):
        sides = value if isinstance(value, list | tuple) else [value]
        if (
            not sides
            or len(sides) > 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in sides)
        ):
            refuse("a positive whole number of pixels or [height, width]")


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
    if overrides is not None and not isinstance(overrides, Mapping):
        raise ValueError(f"{where}: expected a mapping of options, got {overrides!r}")
    merged = dict(defaults)
    for key, value in (overrides or {}).items():
        if key not in defaults:
            allowed = ", ".join(sorted(defaults)) or "none"
            raise ValueError(f"{where}.{key}: unknown option {key!r} (allowed: {allowed})")
        default = defaults[key]
        numeric = (int, float)
        if (
            default is not None
            and value is not None
            and not isinstance(default, Mapping | list)
            and not (isinstance(default, numeric) and isinstance(value, numeric))
            and type(value) is not type(default)
        ):
            raise ValueError(
                f"{where}.{key}: {value!r} is a {type(value).__name__}; expected a "
                f"{type(default).__name__} like the default {default!r}"
            )
        if isinstance(defaults[key], Mapping) and isinstance(value, Mapping):
            merged[key] = merge_options(defaults[key], value, f"{where}.{key}")
        else:
            merged[key] = value
    return merged
