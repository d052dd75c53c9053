"""MLflow models for kdet detectors: log, register, promote, resolve.

Every family exports the same SavedModel contract (:mod:`kdet.export`), so one MLflow
pyfunc flavour serves them all: :func:`log_detector` logs the SavedModel (and
:func:`kdet.deploy.artifacts.log_model` an ONNX / LiteRT artifact of
:func:`kdet.deploy.export`) as an artifact with the pyfunc model of :mod:`kdet.pyfunc_model`
(input: a binary ``image`` column; output: one row per detection).
Registered models are named after the dataset (``raccoon``, ``caltech101``, ...) so the
``champion`` alias picks the best detector of any family:

Example:
    >>> with kdet.tracking.start_run("raccoon", run_name="rcnn"):  # doctest: +SKIP
    ...     publish_detector("data/models/rcnn/saved_model", dataset="raccoon",
    ...                      family="rcnn", metrics={"mAP50": 0.61})
    $ mlflow models serve -m models:/raccoon@champion --env-manager local
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

from kdet import tracking
from kdet.errors import KdetError

PYFUNC_MODEL_FILE = Path(__file__).with_name("pyfunc_model.py")
#: the kdet files the pyfunc model imports, logged with it as MLflow ``code_paths``
PYFUNC_CODE_PATHS = (
    Path(__file__).parent / "deploy" / "postprocess.py",
    Path(__file__).parent / "models" / "rcnn" / "selective_search.py",
)
#: what each artifact type needs to run (pip names), besides pandas and OpenCV
ENGINES = {"saved_model": "tensorflow", "onnx": "onnxruntime", "litert": "ai-edge-litert"}
SIGNATURE = ModelSignature(
    inputs=Schema([ColSpec("binary", "image")]),
    outputs=Schema(
        [
            ColSpec("long", "image_index"),
            *(ColSpec("double", c) for c in ("x1", "y1", "x2", "y2", "score")),
            ColSpec("long", "class_id"),
            ColSpec("string", "class_name"),
        ]
    ),
    params=ParamSchema([ParamSpec("score_threshold", "double", 0.0)]),
)


def _example_image() -> pd.DataFrame:
    """A tiny gray JPEG as the logged input example (MLflow shows it in the UI)."""
    import cv2

    ok, data = cv2.imencode(".jpg", np.full((32, 32, 3), 128, np.uint8))
    assert ok, "OpenCV cannot encode JPEG"
    return pd.DataFrame({"image": [data.tobytes()]})


def log_detector(
    saved_model_dir: str | os.PathLike,
    *,
    name: str = "detector",
    registered_model_name: str | None = None,
    metrics: Mapping[str, float] | None = None,
    tags: Mapping[str, str] | None = None,
    proposals: Mapping | None = None,
) -> mlflow.models.model.ModelInfo:
    """Log a contract SavedModel as an MLflow pyfunc model in the active run (or a new one).

    ONNX and LiteRT artifacts of :func:`kdet.deploy.export` log with
    :func:`kdet.deploy.artifacts.log_model`, served by the same pyfunc model.

    Args:
        saved_model_dir: a folder written by :func:`kdet.export.export_detector`.
        name: the model's name inside the run.
        registered_model_name: also register it as a new version of this model, with
            ``metrics`` and ``tags`` on the version (see :func:`kdet.tracking.register_version`).
        metrics: e.g. ``{"mAP50": 0.61}``; stored on the registered version.
        tags: e.g. ``{"family": "rcnn", "dataset": "raccoon"}``; stored on the version.
        proposals: for models that take region proposals, the selective-search settings
            the served model uses (``{"mode": "fast", "max_side": 300}`` by default).

    Returns:
        MLflow's ``ModelInfo`` (``model_uri``, ``registered_model_version``, ...).
    """
    saved_model_dir = Path(saved_model_dir)
    if not (saved_model_dir / "saved_model.pb").exists():
        raise KdetError(saved_model_dir, "not a SavedModel folder (no saved_model.pb)")
    return log_pyfunc(
        "saved_model",
        {"saved_model": str(saved_model_dir)},
        name=name,
        registered_model_name=registered_model_name,
        metrics=metrics,
        tags=tags,
        model_config={"proposals": dict(proposals)} if proposals else None,
    )


def log_pyfunc(
    format: str,
    artifacts: Mapping[str, str],
    *,
    name: str,
    registered_model_name: str | None = None,
    metrics: Mapping[str, float] | None = None,
    tags: Mapping[str, str] | None = None,
    model_config: Mapping | None = None,
) -> mlflow.models.model.ModelInfo:
    """Log :mod:`kdet.pyfunc_model` with ``artifacts`` (checked by the caller) and the
    code and pip requirements that running a ``format`` artifact takes; register it if
    ``registered_model_name`` is given. See :func:`log_detector`."""
    info = mlflow.pyfunc.log_model(
        name=name,
        python_model=str(PYFUNC_MODEL_FILE),
        artifacts=dict(artifacts),
        code_paths=[str(p) for p in PYFUNC_CODE_PATHS],
        signature=SIGNATURE,
        input_example=_example_image(),
        pip_requirements=[
            f"{ENGINES[format]}=={_version(ENGINES[format])}",
            f"opencv-contrib-python-headless=={_version('opencv-contrib-python-headless')}",
            "pandas",
        ],
        model_config=dict(model_config) if model_config else None,
    )
    if registered_model_name:
        version = tracking.register_version(
            info.model_uri, registered_model_name, metrics=metrics, tags=tags
        )
        info.registered_model_version = version.version
    return info


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def publish_detector(
    saved_model_dir: str | os.PathLike,
    *,
    dataset: str,
    family: str,
    metrics: Mapping[str, float],
    metric: str = "mAP50",
    greater_is_better: bool = True,
    alias: str = "champion",
    proposals: Mapping | None = None,
    registered_model: str | None = None,
) -> dict:
    """Log, register as a version of ``registered_model`` (default: ``dataset``), move
    ``alias`` to its best version by ``metric``.

    Call it inside the evaluation run (``proposals``: see :func:`log_detector`).
    Returns ``{"model_uri", "version", "alias_version"}``.
    """
    name = registered_model or dataset
    info = log_detector(
        saved_model_dir,
        registered_model_name=name,
        metrics=metrics,
        tags={"family": family, "dataset": dataset},
        proposals=proposals,
    )
    best = tracking.promote_best(name, metric, greater_is_better=greater_is_better, alias=alias)
    return {
        "model_uri": info.model_uri,
        "version": str(info.registered_model_version),
        "alias_version": str(best.version) if best else None,
    }


def publish_saved_model(
    saved_model_dir: str | os.PathLike,
    *,
    dataset: str,
    family: str,
    metrics_file: str | os.PathLike,
    registered_model: str | None = None,
    metric: str = "mAP50",
    greater_is_better: bool = True,
    alias: str = "champion",
    proposals: Mapping | None = None,
) -> dict:
    """:func:`publish_detector` in a new run ``publish_<family>`` of experiment ``dataset``,
    with the numbers of an evaluation's metrics JSON (what ``kdet publish`` runs); the
    registered model is ``registered_model`` (default: ``dataset``).

    Returns:
        ``{"run_id", "registered_model", "model_uri", "version", "alias_version"}``.
    """
    try:
        loaded = json.loads(Path(metrics_file).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise KdetError(metrics_file, f"cannot read the metrics JSON: {err}") from err
    metrics = {k: v for k, v in loaded.items() if isinstance(v, int | float)}
    if metric not in metrics:
        raise KdetError(metrics_file, f"has no numeric {metric!r} to rank versions by")
    with tracking.start_run(dataset, run_name=f"publish_{family}", tags={"family": family}) as run:
        tracking.log_metrics(metrics)
        result = publish_detector(
            saved_model_dir,
            dataset=dataset,
            family=family,
            registered_model=registered_model,
            metrics=metrics,
            metric=metric,
            greater_is_better=greater_is_better,
            alias=alias,
            proposals=proposals,
        )
    return {"run_id": run.info.run_id, "registered_model": registered_model or dataset, **result}


def local_saved_model(model: str | os.PathLike, dst_dir: str | os.PathLike | None = None) -> str:
    """The local folder of a contract SavedModel named by ``model``.

    ``model`` is a SavedModel folder, a downloaded MLflow model folder, an MLflow URI
    (``runs:/RUN/detector``, ``runs:/RUN/saved_model``, ``models:/name/3``,
    ``models:/name@champion``, ...) or a registered model name (its ``champion`` alias,
    else its latest version). Remote models are downloaded to ``dst_dir`` (default: a new
    temporary folder).

    Example:
        >>> local_saved_model("models:/raccoon@champion")  # doctest: +SKIP
        '/tmp/tmpab12/detector/artifacts/saved_model'
    """
    text = str(model)
    if Path(text).is_dir():
        return _find_saved_model(Path(text), text)
    tracking.configure()
    uri = text if ":/" in text else _registered_name_uri(text)
    dst = str(dst_dir or tempfile.mkdtemp(prefix="kdet-model-"))
    try:
        local = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=dst)
    except (MlflowException, OSError) as err:
        raise KdetError(uri, f"cannot download the model: {err}") from err
    return _find_saved_model(Path(local), text)


def _registered_name_uri(name: str) -> str:
    client = mlflow.MlflowClient()
    try:
        client.get_model_version_by_alias(name, "champion")
        return f"models:/{name}@champion"
    except MlflowException:
        pass
    try:
        versions = client.search_model_versions(f"name = '{name}'")
    except MlflowException as err:
        raise KdetError(name, f"cannot search the model registry: {err}") from err
    if not versions:
        raise KdetError(
            name,
            "neither a folder nor an MLflow URI, and no registered model has this name "
            f"(tracking URI: {mlflow.get_tracking_uri()})",
        )
    return f"models:/{name}/{max(int(v.version) for v in versions)}"


def _find_saved_model(folder: Path, model: str) -> str:
    found = sorted(folder.rglob("saved_model.pb"), key=lambda p: len(p.parts))
    if not found:
        raise KdetError(model, "holds no SavedModel (no saved_model.pb inside)")
    return str(found[0].parent)
