"""MLflow tracking with an embedded default store.

Without ``MLFLOW_TRACKING_URI``, runs go to ``sqlite:///<project>/mlflow.db`` and their
artifacts to ``<project>/mlartifacts``, both absolute paths, so runs started by
``dvc exp run --temp`` or ``--queue`` (which execute in a copy of the project under
``<project>/.dvc/tmp/exps/``) land in the project's store and are not lost. Runs are
tagged with the git commit, the DVC stage and experiment, and carry the stage's params.

Example:
    >>> with start_run("raccoon", run_name="rcnn", params={"train": {"epochs": 3}}):
    ...     log_metrics({"mAP50": 0.71})
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path

import mlflow

_EXPERIMENT_COPY_MARKER = os.path.join(".dvc", "tmp", "exps")


def project_root(start: str | os.PathLike | None = None) -> Path:
    """The project folder: ``KDET_PROJECT_ROOT``, else the nearest folder up from ``start``
    (default: the working directory) holding ``dvc.yaml`` or ``.git``, seen through any
    DVC experiment copy (``.../.dvc/tmp/exps/...``); else ``start`` itself."""
    if os.environ.get("KDET_PROJECT_ROOT"):
        return Path(os.environ["KDET_PROJECT_ROOT"]).resolve()
    here = Path(start or os.getcwd()).resolve()
    text = str(here)
    if _EXPERIMENT_COPY_MARKER in text:
        here = Path(text.split(os.sep + _EXPERIMENT_COPY_MARKER)[0])
    for folder in (here, *here.parents):
        if (folder / "dvc.yaml").exists() or (folder / ".git").exists():
            return folder
    return here


def default_tracking_uri() -> str:
    """``sqlite:///<absolute project root>/mlflow.db``."""
    return f"sqlite:///{project_root() / 'mlflow.db'}"


def configure(tracking_uri: str | None = None) -> str:
    """Point MLflow at ``tracking_uri``, else ``MLFLOW_TRACKING_URI``, else the default."""
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()
    mlflow.set_tracking_uri(uri)
    return uri


def set_experiment(name: str) -> str:
    """Create (if needed) and select an experiment; returns its id.

    In the embedded store a new experiment keeps its artifacts under
    ``<project>/mlartifacts/<name>`` (absolute); a tracking server chooses for itself.
    """
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is None:
        artifact_location = None
        if mlflow.get_tracking_uri().startswith("sqlite:"):
            artifact_location = (project_root() / "mlartifacts" / name).as_uri()
        experiment_id = mlflow.create_experiment(name, artifact_location=artifact_location)
    else:
        experiment_id = experiment.experiment_id
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def run_tags(stage: str | None = None) -> dict[str, str]:
    """Tags for a run: git commit (and whether the tree was dirty), DVC stage/experiment."""
    tags = {}
    root = project_root()
    git = ["git", "-C", str(root)]
    try:
        commit = subprocess.run(
            [*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            [*git, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        tags["mlflow.source.git.commit"] = commit
        tags["git_dirty"] = str(bool(dirty)).lower()
    except (OSError, subprocess.CalledProcessError):
        pass
    stage = stage or os.environ.get("DVC_STAGE")
    if stage:
        tags["dvc_stage"] = stage
    if os.environ.get("DVC_EXP_NAME"):
        tags["dvc_experiment"] = os.environ["DVC_EXP_NAME"]
    return tags


def flatten_params(params: Mapping, prefix: str = "") -> dict[str, object]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists become strings).

    Example:
        >>> flatten_params({"train": {"lr": 0.001, "size": [64, 64]}})
        {'train.lr': 0.001, 'train.size': '[64, 64]'}
    """
    flat = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_params(value, prefix=f"{name}."))
        else:
            flat[name] = str(value) if isinstance(value, list | tuple) else value
    return flat


@contextlib.contextmanager
def start_run(
    experiment: str,
    run_name: str | None = None,
    params: Mapping | None = None,
    stage: str | None = None,
    tags: Mapping[str, str] | None = None,
    tracking_uri: str | None = None,
) -> Iterator[mlflow.ActiveRun]:
    """Start an MLflow run in ``experiment`` with kdet's tags and the flattened params."""
    configure(tracking_uri)
    set_experiment(experiment)
    with mlflow.start_run(run_name=run_name, tags={**run_tags(stage), **(tags or {})}) as run:
        if params:
            mlflow.log_params(flatten_params(params))
        yield run


def log_metrics(metrics: Mapping[str, float], step: int | None = None) -> None:
    """Log the numeric entries of ``metrics`` (others are skipped)."""
    numeric = {k: float(v) for k, v in metrics.items() if isinstance(v, int | float)}
    mlflow.log_metrics(numeric, step=step)


def log_figure(figure, name: str) -> None:
    """Log a matplotlib figure as ``figures/<name>`` (e.g. ``"loss.png"``)."""
    mlflow.log_figure(figure, f"figures/{name}")


def log_saved_model(path: str | os.PathLike, artifact_path: str = "saved_model") -> None:
    """Log an exported SavedModel folder as run artifacts."""
    mlflow.log_artifacts(str(path), artifact_path=artifact_path)


METRIC_TAG_PREFIX = "metric."


def register_version(
    model_uri: str,
    name: str,
    *,
    metrics: Mapping[str, float] | None = None,
    tags: Mapping[str, str] | None = None,
):
    """Register ``model_uri`` as a new version of model ``name`` with its metrics.

    Metrics are stored as version tags ``metric.<name>`` so the registry UI shows them
    and :func:`promote_best` compares versions across runs and families.

    Example:
        >>> v = register_version("runs:/abc/detector", "raccoon", metrics={"mAP50": 0.6},
        ...                      tags={"family": "rcnn"})  # doctest: +SKIP
    """
    version_tags = {key: str(value) for key, value in (tags or {}).items()}
    for key, value in (metrics or {}).items():
        if isinstance(value, int | float):
            version_tags[f"{METRIC_TAG_PREFIX}{key}"] = repr(float(value))
    return mlflow.register_model(model_uri, name, tags=version_tags)


def promote_best(
    name: str,
    metric: str,
    *,
    greater_is_better: bool = True,
    alias: str = "champion",
    where: Mapping[str, str] | None = None,
):
    """Move ``alias`` to the version of model ``name`` with the best ``metric``.

    Args:
        name: registered model name (kdet names them after the dataset).
        metric: a metric registered with :func:`register_version`, e.g. ``"mAP50"``.
        greater_is_better: ``False`` for metrics like ``"latency_ms"``.
        alias: the alias to move.
        where: only versions whose tags match, e.g. ``{"family": "yolov8"}``.

    Returns:
        The promoted ``ModelVersion``, or ``None`` when no version has ``metric``.
        Ties go to the newest version.
    """
    client = mlflow.MlflowClient()
    candidates = []
    for version in client.search_model_versions(f"name = '{name}'"):
        if any(version.tags.get(k) != str(v) for k, v in (where or {}).items()):
            continue
        value = version.tags.get(f"{METRIC_TAG_PREFIX}{metric}")
        if value is not None:
            score = float(value) if greater_is_better else -float(value)
            candidates.append((score, int(version.version), version))
    if not candidates:
        return None
    best = max(candidates, key=lambda c: c[:2])[2]
    client.set_registered_model_alias(name, alias, best.version)
    return best
