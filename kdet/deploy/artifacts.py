"""An experiment's deploy artifacts: what ``kdet export FAMILY --format onnx,litert`` writes.

Kept out of :mod:`kdet.experiment` so that the DVC train and evaluate stages, whose deps are
the modules the runner imports, do not depend on :mod:`kdet.deploy`.

Example:
    >>> from kdet.experiment import Experiment
    >>> exp = Experiment.from_row("yolov8_raccoon", {"family": "yolov8",
    ...                           "dataset": "raccoon", "train": {}, "evaluate": {}})
    >>> export_experiment(exp, root=".", formats=["onnx"])  # doctest: +SKIP
    {'onnx': 'data/models/yolov8_raccoon/export/model.onnx'}
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from kdet.data.decode import read_image
from kdet.datasets.records import RecordSet
from kdet.deploy.export import FORMATS, QUANTIZE, SUFFIXES, export
from kdet.errors import KdetError
from kdet.experiment import RUN_FILE, Experiment, Layout, load_records
from kdet.families import get_family


def export_experiment(
    experiment: Experiment,
    *,
    root: str | os.PathLike = ".",
    formats: Sequence[str] = ("onnx",),
    quantize: str = "none",
    representative_images: int = 100,
) -> dict[str, str]:
    """Convert the evaluated ``experiment``'s model with :func:`kdet.deploy.export`.

    The family picks the source (:meth:`kdet.families.Family.deploy_source`: the serving
    SavedModel, or YOLOv8's Keras model). Files go to ``data/models/NAME/export/``:
    ``model.onnx``, ``model.tflite`` (``model_float16.tflite`` / ``model_int8.tflite``
    when quantized); ``"saved_model"`` names the serving SavedModel itself.

    Args:
        formats: any of ``"saved_model"``, ``"onnx"``, ``"litert"``.
        quantize: ``"none"``, ``"float16"`` or ``"int8"`` (LiteRT only).
        representative_images: int8 calibration images drawn (seeded) from the training
            split.

    Returns:
        ``{format: path}`` of what was written.

    Raises:
        KdetError: the experiment is not evaluated yet.
        kdet.deploy.DeployError: the family's model cannot take a format.

    Example:
        >>> export_experiment(exp, root=".", formats=["onnx", "litert"])  # doctest: +SKIP
        {'onnx': 'data/models/NAME/export/model.onnx', 'litert': '.../model.tflite'}
    """
    check_request(formats, quantize)
    layout = Layout(Path(root))
    saved_model = layout.saved_model(experiment.name)
    if not (saved_model / "saved_model.pb").exists():
        raise KdetError(saved_model, f"not evaluated yet (dvc repro evaluate@{experiment.name})")
    paths = {"saved_model": str(saved_model)} if "saved_model" in formats else {}
    converted = [f for f in formats if f != "saved_model"]
    if not converted:
        return paths
    info = json.loads((layout.train_dir(experiment.name) / RUN_FILE).read_text())
    source, options = get_family(experiment.family).deploy_source(
        train_dir=layout.train_dir(experiment.name),
        saved_model=saved_model,
        class_names=info["class_names"],
        options=experiment.evaluate,
    )
    images = None
    if quantize == "int8":
        images = training_images(load_records(experiment, layout), representative_images)
    stem = "model" if quantize == "none" else f"model_{quantize}"
    for format in converted:
        path = layout.export_dir(experiment.name) / (stem + SUFFIXES[format])
        paths[format] = export(source, path, format, quantize, images, **options)
    return paths


def check_request(formats: Sequence[str], quantize: str) -> None:
    """Raise ``ValueError`` for what :func:`export_experiment` cannot do, before any work.

    Example:
        >>> check_request(["onnx"], "int8")
        Traceback (most recent call last):
        ...
        ValueError: quantize='int8' applies to format 'litert' only. Received: formats=['onnx']
    """
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats or len(set(formats)) != len(formats):
        raise ValueError(
            f"formats must be distinct names among {', '.join(FORMATS)}. Received: "
            f"formats={list(formats)}"
        )
    if quantize not in QUANTIZE:
        raise ValueError(f"quantize must be one of {', '.join(QUANTIZE)}. Received: {quantize=}")
    if quantize != "none" and list(formats) != ["litert"]:
        raise ValueError(
            f"quantize={quantize!r} applies to format 'litert' only. Received: "
            f"formats={list(formats)}"
        )


def training_images(records: RecordSet, count: int, seed: int = 0) -> list:
    """Up to ``count`` training-split images drawn with ``seed``, as ``uint8 (H, W, 3)``
    arrays decoded as the input pipeline decodes them."""
    train = records.split("train")
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(len(train), size=min(count, len(train)), replace=False))
    return [read_image(str(train.image_path(train.records[i]))).numpy() for i in chosen]
