"""An experiment's deploy artifacts: what ``kdet export FAMILY --format onnx,litert`` and the
DVC stage ``export@NAME`` write.

:func:`export_experiment` converts an evaluated experiment's model; :func:`export_step` (the
stage) converts it to the formats of ``params.yaml: export``, scores every artifact and the
SavedModel the same way on the test split (mAP50 and mAP with :mod:`kdet.metrics` through
the detector evaluation of :mod:`kdet.models.rcnn.evaluation`; median / p90 latency with
:func:`kdet.deploy.benchmark.benchmark`; file size), writes ``data/models/NAME/export/``
(replaced as a whole), ``data/metrics/NAME_export.json`` and
``data/plots/NAME/export.csv``, and logs the folder and the numbers into the training's
MLflow run (artifacts ``export/``), each ONNX / LiteRT file also as an MLflow pyfunc model
(``detector_onnx``, ``detector_litert``, ``detector_litert_int8``...; see
:func:`log_model`).

Kept out of :mod:`kdet.experiment` so that the DVC train and evaluate stages, whose deps are
the modules the runner imports, do not depend on :mod:`kdet.deploy`.

Example:
    >>> from kdet.experiment import Experiment
    >>> exp = Experiment.from_row("yolov8_raccoon", {"family": "yolov8",
    ...                           "dataset": "raccoon", "train": {}, "evaluate": {}})
    >>> export_experiment(exp, root=".", formats=["onnx"])  # doctest: +SKIP
    {'onnx': 'data/models/yolov8_raccoon/export/model.onnx'}
    >>> export_step(exp, root=".", formats=["onnx", "litert"])["artifacts"]["onnx"]["mAP50"]
    ... # doctest: +SKIP
    0.41
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from kdet import atomic, tracking
from kdet.data.decode import read_image
from kdet.datasets.records import RecordSet
from kdet.deploy.benchmark import benchmark
from kdet.deploy.export import FORMATS, QUANTIZE, SUFFIXES, DeployError, export, sidecar_path
from kdet.deploy.runtime import Runtime
from kdet.errors import KdetError
from kdet.experiment import RUN_FILE, Experiment, Layout, _write_json, flat_metrics, load_records
from kdet.families import get_family
from kdet.latency import latency_images

#: the export folder's manifest (also the stage's metrics, ``data/metrics/NAME_export.json``)
EXPORT_FILE = "export.json"
#: ``data/plots/NAME/export.csv``: one row per artifact (DVC plots)
PLOT_FILE = "export.csv"
PLOT_COLUMNS = (
    "artifact",
    "format",
    "file",
    "mAP50",
    "mAP",
    "latency_ms",
    "latency_p90_ms",
    "size_kib",
    "threads",
)


def export_experiment(
    experiment: Experiment,
    *,
    root: str | os.PathLike = ".",
    formats: Sequence[str] = ("onnx",),
    quantize: str = "none",
    representative_images: int = 100,
    out_dir: str | os.PathLike | None = None,
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
        out_dir: write the converted files here instead of ``data/models/NAME/export/``.

    Returns:
        ``{format: path}`` of what was written.

    Raises:
        KdetError: the experiment is not evaluated yet.
        kdet.deploy.DeployError: the family's model cannot take a format (its
            :attr:`~kdet.families.Family.deploy_refusals`, before any work).

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
    family = get_family(experiment.family)
    for format in converted:
        if format in family.deploy_refusals:
            raise DeployError(saved_model, f"format {format!r}: {family.deploy_refusals[format]}")
    info = json.loads((layout.train_dir(experiment.name) / RUN_FILE).read_text())
    source, options = family.deploy_source(
        train_dir=layout.train_dir(experiment.name),
        saved_model=saved_model,
        class_names=info["class_names"],
        options=experiment.evaluate,
    )
    proposals = family.proposal_settings(experiment.train)
    if proposals is not None:
        options = {**options, "proposals": proposals}
    images = None
    if quantize == "int8":
        images = training_images(load_records(experiment, layout), representative_images)
    stem = "model" if quantize == "none" else f"model_{quantize}"
    for format in converted:
        folder = layout.export_dir(experiment.name) if out_dir is None else Path(out_dir)
        path = folder / (stem + SUFFIXES[format])
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


def check_step_request(formats: Sequence[str], quantize: Sequence[str]) -> None:
    """Raise ``ValueError`` for ``params.yaml: export`` settings :func:`export_step` cannot
    follow, before any work.

    Example:
        >>> check_step_request(["onnx", "litert"], ["int8"])
        >>> check_step_request(["onnx"], ["none"])
        Traceback (most recent call last):
        ...
        ValueError: export.quantize: distinct names among float16, int8. Received: ['none']
    """
    if isinstance(formats, str) or any(f not in SUFFIXES for f in formats):
        raise ValueError(
            f"export.formats: distinct names among {', '.join(SUFFIXES)} (the SavedModel is "
            f"always scored). Received: {formats!r}"
        )
    if formats:
        check_request(formats, "none")
    variants = [q for q in QUANTIZE if q != "none"]
    if (
        isinstance(quantize, str)
        or any(q not in variants for q in quantize)
        or len(set(quantize)) != len(quantize)
    ):
        raise ValueError(
            f"export.quantize: distinct names among {', '.join(variants)}. Received: {quantize!r}"
        )


def export_step(
    experiment: Experiment,
    *,
    root: str | os.PathLike = ".",
    formats: Sequence[str] = ("onnx", "litert"),
    quantize: Sequence[str] = (),
    representative_images: int = 100,
    threads: int = 1,
    warmup: int = 5,
    repeats: int = 50,
) -> dict:
    """The DVC stage ``export@NAME``: convert, score and log the evaluated ``experiment``.

    Writes ``data/models/NAME/export/`` (the artifacts and :data:`EXPORT_FILE`; built in a
    staging folder beside it and renamed into place, so a failure leaves the previous folder
    as it was), ``data/metrics/NAME_export.json`` (the same numbers) and
    ``data/plots/NAME/export.csv``, then logs the folder to the training's MLflow run as
    artifacts ``export/`` and the numbers as metrics ``export.ARTIFACT.mAP50`` etc.

    Every artifact and the serving SavedModel go through :class:`kdet.deploy.Runtime` alike:
    mAP50 and mAP on the test split (COCO-style, :mod:`kdet.metrics`; at the served score
    threshold, so they may differ from ``evaluate@NAME``'s, which scores a low-threshold
    decoder for complete PR curves), median and p90 milliseconds per image (batch 1,
    ``warmup`` untimed calls, then ``repeats`` calls over test images of their own sizes;
    ONNX Runtime and LiteRT on ``threads`` intra-op threads, TensorFlow on its process-wide
    pool, each row says which) and size on disk.

    A format the family's model cannot take (:attr:`kdet.families.Family.deploy_refusals`:
    LiteRT for R-CNN and Fast R-CNN, both for the sliding window) is not an error: the
    metrics list it under ``refused`` with the reason; a family that converts to none of
    the requested formats gets a folder holding only :data:`EXPORT_FILE` with
    ``exported: false`` and the reason, and so does the metrics file.

    Args:
        formats: float artifacts among ``"onnx"`` (``model.onnx``) and ``"litert"``
            (``model.tflite``).
        quantize: extra LiteRT files among ``"float16"`` (``model_float16.tflite``) and
            ``"int8"`` (``model_int8.tflite``, calibrated on ``representative_images``
            training images).
        threads, warmup, repeats: of the latency measurement.

    Returns:
        The metrics written.

    Raises:
        ValueError: bad settings (before any work).
        KdetError: the experiment is not trained and evaluated yet.
    """
    formats, quantize = list(formats), list(quantize)
    check_step_request(formats, quantize)
    root = Path(root)
    layout = Layout(root)
    name = experiment.name
    run_file = layout.train_dir(name) / RUN_FILE
    if not run_file.exists():
        raise KdetError(layout.train_dir(name), f"not trained yet (dvc repro train@{name})")
    run_id = json.loads(run_file.read_text())["run_id"]
    family = get_family(experiment.family)
    requested = formats + (["litert"] if quantize and "litert" not in formats else [])
    refused = {f: family.deploy_refusals[f] for f in requested if f in family.deploy_refusals}
    formats = [f for f in formats if f not in refused]
    quantize = [] if "litert" in refused else quantize
    export_dir = layout.export_dir(name)
    staging = export_dir.with_name(f".{export_dir.name}-staging")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        if not formats and not quantize:
            reason = "; ".join(f"{f}: {why}" for f, why in refused.items())
            metrics = {"exported": False, "family": family.name, "reason": reason}
        else:
            paths = {}
            if formats:
                paths = export_experiment(experiment, root=root, formats=formats, out_dir=staging)
            for variant in quantize:
                written = export_experiment(
                    experiment,
                    root=root,
                    formats=["litert"],
                    quantize=variant,
                    representative_images=representative_images,
                    out_dir=staging,
                )
                paths[f"litert_{variant}"] = written["litert"]
            records = load_records(experiment, layout)
            rows = score_artifacts(
                {"saved_model": layout.saved_model(name), **paths},
                records.split("test"),
                latency_images(records),
                num_threads=threads,
                warmup=warmup,
                repeats=repeats,
                proposals=family.proposal_settings(experiment.train),
            )
            for row in rows:  # where the file will be once the folder is in place
                final = Path(row["path"])
                if final.parent == staging:
                    final = export_dir / final.name
                row["file"] = os.path.relpath(final, root)
            metrics = {
                "exported": True,
                "family": family.name,
                "test_images": len(records.split("test")),
                "threads": threads,
                "artifacts": {row["label"]: {k: row[k] for k in PLOT_COLUMNS[1:]} for row in rows},
            }
            if refused:
                metrics["refused"] = refused
        _write_json(staging / EXPORT_FILE, metrics)
        shutil.rmtree(export_dir, ignore_errors=True)
        os.replace(staging, export_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _write_json(layout.export_metrics(name), metrics)
    _write_rows(
        layout.plots(name) / PLOT_FILE,
        [{"artifact": label, **row} for label, row in metrics.get("artifacts", {}).items()],
    )
    _log(run_id, export_dir, metrics)
    return metrics


def score_artifacts(
    artifacts: Mapping[str, str | os.PathLike],
    record_set: RecordSet,
    images: Sequence[np.ndarray],
    *,
    num_threads: int = 1,
    warmup: int = 5,
    repeats: int = 50,
    proposals: Mapping | None = None,
) -> list[dict]:
    """:func:`kdet.deploy.benchmark.benchmark` rows of ``artifacts`` (timed on ``images``)
    with ``mAP50``, ``mAP`` (on ``record_set``, through
    :func:`kdet.models.rcnn.evaluation.evaluate_detector`) and ``size_kib`` added.
    ``proposals``: the selective-search settings of proposal-taking (R-CNN) artifacts."""
    # The detector evaluation every R-CNN-style family scores with (imported here: it pulls
    # in the model packages, which `kdet export MODEL` does not need).
    from kdet.models.rcnn.evaluation import evaluate_detector

    runtimes = {
        label: Runtime(path, num_threads=num_threads, proposals=proposals)
        for label, path in artifacts.items()
    }
    rows = benchmark(runtimes, images, warmup=warmup, repeats=repeats)
    for row in rows:  # each artifact loaded once: timed above, scored here
        report = evaluate_detector(runtimes[row["label"]], record_set)
        row.update(
            mAP50=float(report.result.mAP50),
            mAP=float(report.result.mAP),
            size_kib=row["size_bytes"] / 1024,
        )
    return rows


def _write_rows(path: Path, rows: Sequence[Mapping]) -> None:
    """Write ``rows`` (:data:`PLOT_COLUMNS`) as CSV atomically (header only when empty)."""
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=PLOT_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    atomic.write_text(path, text.getvalue())


def _log(run_id: str, export_dir: Path, metrics: Mapping) -> None:
    """The export folder as artifacts ``export/``, each ONNX / LiteRT file in it as a pyfunc
    model ``detector_ARTIFACT`` and the numbers as metrics ``export.ARTIFACT.KEY`` of the
    training's MLflow run."""
    import mlflow

    tracking.configure()
    with mlflow.start_run(run_id=run_id):
        tracking.log_folder(export_dir, "export")
        for label, row in metrics.get("artifacts", {}).items():
            if row["format"] != "saved_model":
                log_model(export_dir / Path(row["file"]).name, name=f"detector_{label}")
        tracking.log_metrics(flat_metrics({"export": metrics.get("artifacts", {})}))


def log_model(
    path: str | os.PathLike,
    *,
    name: str = "detector",
    registered_model_name: str | None = None,
    metrics: Mapping[str, float] | None = None,
    tags: Mapping[str, str] | None = None,
):
    """Log an ``.onnx`` or ``.tflite`` artifact of :func:`kdet.deploy.export` as an MLflow
    pyfunc model in the active run (or a new one): the served model
    (:mod:`kdet.pyfunc_model`) runs it with ONNX Runtime or LiteRT and needs neither kdet
    nor TensorFlow; R-CNN artifacts compute their proposals with the settings they carry.

    Args:
        path: the artifact (a ``.tflite`` file beside its ``NAME.classes.json``).
        name, registered_model_name, metrics, tags: as for
            :func:`kdet.serving.log_detector` (which logs SavedModels).

    Returns:
        MLflow's ``ModelInfo``.

    Raises:
        DeployError: naming the file when it is missing, corrupt or lacks its metadata.

    Example:
        >>> with tracking.start_run("raccoon", run_name="yolo_onnx"):  # doctest: +SKIP
        ...     info = log_model("data/models/yolov8_raccoon/export/model.onnx")
        >>> mlflow.pyfunc.load_model(info.model_uri).predict(frame)  # doctest: +SKIP
    """
    from kdet.serving import log_pyfunc

    runtime = Runtime(path)  # checks the file and its metadata
    if runtime.format == "saved_model":
        raise DeployError(path, "is a folder: log a SavedModel with kdet.serving.log_detector")
    artifacts = {runtime.format: str(path)}
    if runtime.format == "litert":
        artifacts["metadata"] = str(sidecar_path(path))
    return log_pyfunc(
        runtime.format,
        artifacts,
        name=name,
        registered_model_name=registered_model_name,
        metrics=metrics,
        tags=tags,
    )
