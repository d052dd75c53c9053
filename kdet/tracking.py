"""MLflow tracking with an embedded default store.

Without ``MLFLOW_TRACKING_URI``, runs go to ``sqlite:///<project>/mlflow.db`` and their
artifacts to ``<project>/mlartifacts``, both absolute paths, so runs started by
``dvc exp run --temp`` or ``--queue`` (which execute in a copy of the project under
``<project>/.dvc/tmp/exps/``) land in the project's store and are not lost. Runs are
tagged with the git commit, the DVC stage and experiment, and carry the stage's params.

A tracking server never costs a training run:

- down at the start: :func:`start_run` fails fast, before any work, with a
  :class:`TrackingUnavailableError` naming the server and the way out;
- gone mid-run: the logging functions here (and :class:`MetricsCallback`) warn once and
  from then on write the run's metrics, params and artifacts under
  ``<project>/mlflow_offline/<run id>/``; training goes on, and :func:`sync_offline`
  pushes them to the run once the server is back.

While a kdet run is active, MLflow's HTTP client retries twice with a 20 s timeout
(instead of 7 retries over ~4 minutes per call) unless ``MLFLOW_HTTP_REQUEST_MAX_RETRIES``
or ``MLFLOW_HTTP_REQUEST_TIMEOUT`` are set.

Example:
    >>> with start_run("raccoon", run_name="rcnn", params={"train": {"epochs": 3}}):
    ...     log_metrics({"mAP50": 0.71})
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import keras
import mlflow
import requests
from mlflow.exceptions import MlflowException

from kdet.errors import KdetError

try:
    import fcntl
except ImportError:  # Windows: the first use of a new sqlite store is not serialized
    fcntl = None

logger = logging.getLogger(__name__)

_EXPERIMENT_COPY_MARKER = os.path.join(".dvc", "tmp", "exps")
OFFLINE_FOLDER = "mlflow_offline"
OFFLINE_LOG = "log.jsonl"
# What a tracking call raises when the server or the store is unreachable. An
# MlflowException counts only with one of _UNAVAILABLE_CODES: others (a param logged twice
# with different values, ...) are mistakes in the caller and are raised.
_TRACKING_ERRORS = (MlflowException, requests.RequestException, OSError)
_UNAVAILABLE_CODES = {"INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED"}
_RUN_HTTP_SETTINGS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}
# Runs whose tracking failed mid-run: run id -> offline folder.
_offline_runs: dict[str, Path] = {}
# sqlite stores whose tables this process has seen created (see _initialize_sqlite_store).
_ready_stores: set[str] = set()


class TrackingUnavailableError(KdetError):
    """The MLflow tracking server cannot be reached (``where`` is its URI)."""


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
    """Point MLflow at ``tracking_uri``, else ``MLFLOW_TRACKING_URI``, else the default.

    A ``sqlite:`` store's tables are created (or upgraded) once, under a lock that other
    kdet processes wait on (see :func:`_initialize_sqlite_store`), so any number of them
    can start at once on a new ``mlflow.db``.
    """
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()
    mlflow.set_tracking_uri(uri)
    _initialize_sqlite_store(uri)
    return uri


def _initialize_sqlite_store(uri: str) -> None:
    """Let MLflow create a ``sqlite:///PATH`` store's tables while holding ``PATH.lock``.

    MLflow creates the tables on a process's first use of the file; two processes doing so
    at once on a new file fail (``duplicate column name``, ``table already exists``).

    Example:
        >>> _initialize_sqlite_store("sqlite:////tmp/kdet-doctest/mlflow.db")  # doctest: +SKIP
    """
    if not uri.startswith("sqlite:///") or uri in _ready_stores or fcntl is None:
        return
    database = Path(uri.removeprefix("sqlite:///").split("?", 1)[0])
    database.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{database}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        mlflow.MlflowClient(uri)  # creates or upgrades the tables
    _ready_stores.add(uri)


def check_server(tracking_uri: str | None = None, timeout: float = 5.0) -> None:
    """Raise :class:`TrackingUnavailableError` unless an ``http(s)`` tracking server answers.

    Asks the server's ``/health`` endpoint once, without MLflow's retries, so a server
    that is down is reported in seconds. Other URIs (``sqlite:``, ``file:``) pass.

    Example:
        >>> check_server("sqlite:///mlflow.db")
        >>> check_server("http://127.0.0.1:1")  # doctest: +SKIP
        Traceback (most recent call last):
        kdet.tracking.TrackingUnavailableError: http://127.0.0.1:1: MLflow tracking server ...
    """
    uri = tracking_uri or mlflow.get_tracking_uri()
    if not uri.startswith(("http://", "https://")):
        return
    try:
        response = requests.get(uri.rstrip("/") + "/health", timeout=timeout)
        problem = None if response.ok else f"/health answered HTTP {response.status_code}"
    except requests.RequestException as err:
        problem = f"{type(err).__name__}: {err}"
    if problem is not None:
        raise TrackingUnavailableError(
            uri,
            f"MLflow tracking server is not reachable ({problem}). Nothing was run. Start "
            "the server, or unset MLFLOW_TRACKING_URI to log to the local store "
            f"{default_tracking_uri()}",
        )


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
        try:
            experiment_id = mlflow.create_experiment(name, artifact_location=artifact_location)
        except MlflowException as err:  # another process created it a moment ago
            if err.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            experiment_id = mlflow.get_experiment_by_name(name).experiment_id
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
    run_id: str | None = None,
) -> Iterator[mlflow.ActiveRun]:
    """Start an MLflow run in ``experiment`` with kdet's tags and the flattened params.

    ``run_id`` reopens an existing run instead (e.g. a training resumed after a kill).

    Raises:
        TrackingUnavailableError: an ``http(s)`` tracking server does not answer (checked
            before the run starts, so no work is lost).
    """
    uri = configure(tracking_uri)
    check_server(uri)
    with _run_http_settings():
        set_experiment(experiment)
        if run_id is None:
            run = mlflow.start_run(run_name=run_name, tags={**run_tags(stage), **(tags or {})})
        else:
            run = mlflow.start_run(run_id=run_id)
        status = "FINISHED"
        try:
            if params:
                log_params(params)
            yield run
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        except BaseException:
            status = "FAILED"
            raise
        finally:
            _end_run(run.info.run_id, status)


def log_params(params: Mapping) -> None:
    """Log (nested) params flattened with dots: ``{"train": {"lr": 0.1}}`` -> ``train.lr``."""
    flat = flatten_params(params)
    _track("params", {"params": flat}, lambda: mlflow.log_params(flat))


def log_metrics(metrics: Mapping[str, float], step: int | None = None) -> None:
    """Log the numeric entries of ``metrics`` (others are skipped)."""
    numeric = {k: float(v) for k, v in metrics.items() if isinstance(v, int | float)}
    _track(
        "metrics",
        {"metrics": numeric, "step": step, "timestamp": int(time.time() * 1000)},
        lambda: mlflow.log_metrics(numeric, step=step),
    )


def log_figure(figure, name: str) -> None:
    """Log a matplotlib figure as ``figures/<name>`` (e.g. ``"loss.png"``)."""

    def offline(folder: Path) -> dict:
        target = folder / "artifacts" / "figures" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(target)
        return {"local": str(target.parent), "artifact_path": "figures", "file": name}

    _track("artifact", offline, lambda: mlflow.log_figure(figure, f"figures/{name}"))


def log_saved_model(path: str | os.PathLike, artifact_path: str = "saved_model") -> None:
    """Log an exported SavedModel folder as run artifacts."""
    log_folder(path, artifact_path)


def log_folder(path: str | os.PathLike, artifact_path: str) -> None:
    """Log every file under the folder ``path`` as run artifacts under ``artifact_path``
    (e.g. ``data/models/NAME/export`` as ``export/``)."""

    def offline(folder: Path) -> dict:
        target = folder / "artifacts" / artifact_path
        shutil.copytree(path, target, dirs_exist_ok=True)
        return {"local": str(target), "artifact_path": artifact_path}

    _track("artifacts", offline, lambda: mlflow.log_artifacts(str(path), artifact_path))


class MetricsCallback(keras.callbacks.Callback):
    """Logs the optimizer's config at the start and every epoch's logs to the active run.

    Like ``mlflow.keras.MlflowCallback``, but through :func:`log_metrics`, so a tracking
    server going away mid-run costs one warning, not the training.

    Example:
        >>> with start_run("shapes"):  # doctest: +SKIP
        ...     model.fit(x, y, epochs=5, callbacks=[MetricsCallback()])
    """

    def on_train_begin(self, logs=None):
        if self.model.optimizer is None:
            return
        config = self.model.optimizer.get_config()
        try:
            log_params({"optimizer": {k: v for k, v in config.items() if v is not None}})
        except MlflowException as err:  # e.g. a second fit in the run with another rate
            logger.warning("optimizer config not logged again: %s", str(err).splitlines()[0])

    def on_epoch_end(self, epoch, logs=None):
        log_metrics(logs or {}, step=epoch)


def offline_folder(run_id: str) -> Path:
    """Where a run's tracking goes when its server is gone: ``<project>/mlflow_offline/ID``."""
    return project_root() / OFFLINE_FOLDER / run_id


def sync_offline(folder: str | os.PathLike, tracking_uri: str | None = None) -> int:
    """Push what a run logged offline to its tracking server, then delete the folder.

    Args:
        folder: a run's offline folder (named in the warning; see :func:`offline_folder`).
        tracking_uri: the server (default: as :func:`configure`).

    Returns:
        The number of entries pushed.

    Example:
        >>> sync_offline("mlflow_offline/0a1b2c3d")  # doctest: +SKIP
        12
    """
    from mlflow.entities import Metric

    folder = Path(folder)
    run_id = folder.name
    client = mlflow.MlflowClient(configure(tracking_uri))
    lines = (folder / OFFLINE_LOG).read_text().splitlines()
    for line in lines:
        entry = json.loads(line)
        kind = entry["kind"]
        if kind == "metrics":
            metrics = [
                Metric(k, v, entry["timestamp"], entry["step"] or 0)
                for k, v in entry["metrics"].items()
            ]
            client.log_batch(run_id, metrics=metrics)
        elif kind == "params":
            for key, value in entry["params"].items():
                client.log_param(run_id, key, value)
        elif kind in ("artifact", "artifacts"):
            client.log_artifacts(run_id, entry["local"], entry["artifact_path"])
        elif kind == "end":
            client.set_terminated(run_id, entry["status"])
    shutil.rmtree(folder)
    _offline_runs.pop(run_id, None)
    return len(lines)


# ----------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def _run_http_settings() -> Iterator[None]:
    """Shorter MLflow HTTP retries while a kdet run is active, unless the user set them."""
    added = [k for k in _RUN_HTTP_SETTINGS if k not in os.environ]
    os.environ.update({k: _RUN_HTTP_SETTINGS[k] for k in added})
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


def _track(kind: str, payload: dict | Callable[[Path], dict], action: Callable[[], object]):
    """Run the tracking ``action``; if the store fails, note the entry offline instead."""
    run = mlflow.active_run()
    if run is None:  # not inside a run: plain MLflow behaviour
        action()
        return
    run_id = run.info.run_id
    if run_id not in _offline_runs:
        try:
            action()
            return
        except _TRACKING_ERRORS as err:
            if not _unavailable(err):
                raise
            _go_offline(run_id, err)
    folder = _offline_runs[run_id]
    entry = payload(folder) if callable(payload) else payload
    _append(folder, {"kind": kind, **entry})


def _unavailable(error: BaseException) -> bool:
    return not isinstance(error, MlflowException) or error.error_code in _UNAVAILABLE_CODES


def _go_offline(run_id: str, error: BaseException) -> None:
    folder = offline_folder(run_id)
    folder.mkdir(parents=True, exist_ok=True)
    _offline_runs[run_id] = folder
    logger.warning(
        "MLflow tracking at %s failed (%s). Training goes on; run %s now logs to %s. "
        "Push it later with kdet.tracking.sync_offline(%r).",
        mlflow.get_tracking_uri(),
        str(error).splitlines()[0][:300],
        run_id,
        folder,
        str(folder),
    )


def _append(folder: Path, entry: dict) -> None:
    with open(folder / OFFLINE_LOG, "a") as log:
        log.write(json.dumps(entry) + "\n")


def _end_run(run_id: str, status: str) -> None:
    if run_id not in _offline_runs:
        try:
            mlflow.end_run(status)
            return
        except _TRACKING_ERRORS as err:  # end_run has left the run already; only the server
            _go_offline(run_id, err)  # missed the status
    else:
        with contextlib.suppress(*_TRACKING_ERRORS):
            mlflow.end_run(status)  # the server may be back; the offline log has it anyway
    _append(_offline_runs[run_id], {"kind": "end", "status": status})


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

    Several processes may publish to ``name`` at once: each reads the versions again after
    moving the alias and moves it again until what it read before still holds, so the last
    one to move it has seen every version registered before that move.

    Example:
        >>> promote_best("raccoon", "mAP50").version  # doctest: +SKIP
        '3'
    """
    client = mlflow.MlflowClient()
    best = _best_version(client, name, metric, greater_is_better, where)
    while best is not None:
        client.set_registered_model_alias(name, alias, best.version)
        again = _best_version(client, name, metric, greater_is_better, where)
        if again.version == best.version:
            return best
        best = again
    return None


def _best_version(client, name: str, metric: str, greater_is_better: bool, where):
    """The version of ``name`` matching ``where`` with the best ``metric`` tag, or ``None``."""
    candidates = []
    for version in client.search_model_versions(f"name = '{name}'"):
        if any(version.tags.get(k) != str(v) for k, v in (where or {}).items()):
            continue
        value = version.tags.get(f"{METRIC_TAG_PREFIX}{metric}")
        if value is not None:
            score = float(value) if greater_is_better else -float(value)
            candidates.append((score, int(version.version), version))
    return max(candidates, key=lambda c: c[:2])[2] if candidates else None
