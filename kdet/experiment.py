"""The one experiment runner: every training, evaluation and publication goes through it.

An experiment is a row of the ``experiments:`` table in ``params.yaml`` (or the same
dict from Python): a model family, a dataset and overrides of the family's default
options. :func:`train` loads the dataset's records, checks that the family fits them,
picks the ``tf.distribute`` strategy, opens one MLflow run (experiment = the dataset),
trains with a resumable end-of-epoch checkpoint and saves the model; :func:`evaluate`
scores it on the test split, exports the serving SavedModel, times it and writes the
metrics, plots and figures into the same MLflow run; :func:`publish` registers it;
:func:`kdet.deploy.artifacts.export_step` (the ``export@NAME`` stage, kept in
:mod:`kdet.deploy` so the train and evaluate stages do not depend on it) converts it to
ONNX / LiteRT, scores each artifact and logs them into the same run.
Only the chief of a multi-worker cluster writes anything.

Files of experiment ``NAME`` (under the project root):

====================================  ====================================================
``data/raw/DATASET/records.json``     the dataset (``kdet.datasets.fetch``)
``data/models/NAME/train/``           the trained model + ``run.json`` (train output)
``data/models/NAME/saved_model/``     the serving SavedModel (evaluate output)
``data/models/NAME/export/``          ONNX / LiteRT artifacts + ``export.json`` (export)
``data/checkpoints/NAME/KEY/``        the resumable backup while training (deleted after)
``data/metrics/NAME_train.json``      training numbers; ``NAME.json``: the evaluation's;
                                      ``NAME_export.json``: each artifact's mAP, latency
``data/plots/NAME/``                  ``history.csv``, ``pr_curve.csv``, ``export.csv``,
                                      figures
====================================  ====================================================

Example:
    >>> exp = Experiment.from_row("yolov8_shapes", {"family": "yolov8", "dataset": "shapes",
    ...                           "train": {"epochs": 2, "image_size": 64}})  # doctest: +SKIP
    >>> train(exp, root=".")  # doctest: +SKIP
    >>> evaluate(exp, root=".")["mAP50"]  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from kdet import atomic, distribute, tracking
from kdet.datasets.records import RecordSet
from kdet.errors import KdetError
from kdet.families import get_family, merge_options

ROW_KEYS = (
    "family",
    "dataset",
    "train",
    "evaluate",
    "init_from",
    "registered_model",
    "showcase",
)
REQUIRED_KEYS = ("family", "dataset", "train", "evaluate")
# The params.yaml tables whose rows are experiments (finetune: rows with init_from).
TABLES = ("experiments", "finetune")
RUN_FILE = "run.json"
# The first of these a dataset has is scored (as "test"); training takes "train".
EVALUATION_SPLITS = ("test", "val", "valid", "validation")


@dataclasses.dataclass(frozen=True)
class Experiment:
    """One row of the experiments table, with the family's defaults filled in.

    Attributes:
        name: the row's name (``yolov8_raccoon``): names the MLflow run and the outputs.
        family: a registered family (:func:`kdet.families.family_names`).
        dataset: a dataset name (its records are in ``data/raw/DATASET``).
        train: the family's ``train`` options, ``strategy`` among them (``auto``,
            ``default``, ``mirrored`` or ``multi_worker``; ``batch_size`` is per replica).
        evaluate: the family's ``evaluate`` options.
        init_from: the experiment whose trained model this one starts from, or ``None``.
        registered_model: MLflow registered model name; ``None``: the dataset's name
            (``DATASET_FAMILY`` for families not ranked by ``mAP50``).
        showcase: file names of dataset images (any split, e.g. ``raccoon-1.jpg``) that
            :func:`evaluate` annotates with the exported SavedModel, as ``kdet predict``
            draws them, into ``data/plots/NAME/showcase/`` and the MLflow run.
    """

    name: str
    family: str
    dataset: str
    train: dict
    evaluate: dict
    init_from: str | None = None
    registered_model: str | None = None
    showcase: tuple[str, ...] = ()

    @classmethod
    def from_row(cls, name: str, row: Mapping, where: str = "experiments") -> Experiment:
        """Build and check an experiment from its table row.

        Raises:
            ValueError: an unknown key, family or option, naming ``where.NAME.KEY``, the
                value and what is allowed.
        """
        where = f"{where}.{name}"
        if not isinstance(row, Mapping):
            raise ValueError(f"{where}: expected a mapping with family and dataset, got {row!r}")
        unknown = sorted(set(row) - set(ROW_KEYS))
        if unknown:
            raise ValueError(f"{where}.{unknown[0]}: unknown key (allowed: {', '.join(ROW_KEYS)})")
        for key in REQUIRED_KEYS:
            if key not in row or (key in ("family", "dataset") and not row[key]):
                raise ValueError(
                    f"{where}.{key}: missing (every row has {', '.join(REQUIRED_KEYS)}; "
                    "train and evaluate may be {})"
                )
        try:
            family = get_family(row["family"])
        except ValueError as err:
            raise ValueError(f"{where}.family: {err}") from None
        train = merge_options(
            {**family.defaults["train"], "strategy": "auto"}, row["train"], f"{where}.train"
        )
        evaluate = merge_options(family.defaults["evaluate"], row["evaluate"], f"{where}.evaluate")
        family.check_options({"train": train, "evaluate": evaluate}, where)
        if row.get("init_from") is not None and not isinstance(row["init_from"], str):
            raise ValueError(f"{where}.init_from: {row['init_from']!r} is not an experiment name")
        showcase = row.get("showcase") or []
        if not isinstance(showcase, list) or not all(isinstance(n, str) and n for n in showcase):
            raise ValueError(f"{where}.showcase: {showcase!r} is not a list of image file names")
        return cls(
            name=name,
            family=family.name,
            dataset=str(row["dataset"]),
            train=train,
            evaluate=evaluate,
            init_from=row.get("init_from"),
            registered_model=row.get("registered_model"),
            showcase=tuple(showcase),
        )

    def params(self) -> dict:
        """Everything that defines the run (logged to MLflow, hashed for checkpoints); the
        showcase images do not."""
        params = dataclasses.asdict(self)
        del params["showcase"]
        return params

    def registered_model_name(self) -> str:
        """The MLflow registered model this experiment publishes to."""
        if self.registered_model:
            return self.registered_model
        if get_family(self.family).rank_by == "mAP50":
            return self.dataset
        return f"{self.dataset}_{self.family}"


def find_row(params: Mapping, name: str) -> tuple[str, Mapping]:
    """``(table, row)`` of the experiment ``name`` in ``params``' :data:`TABLES`.

    Raises:
        ValueError: no table has a row ``name``.

    Example:
        >>> find_row({"finetune": {"a": {"family": "yolov8"}}}, "a")
        ('finetune', {'family': 'yolov8'})
    """
    for table in TABLES:
        if name in (params.get(table) or {}):
            return table, params[table][name]
    raise ValueError(f"no experiment {name!r} in {' or '.join(TABLES)}")


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where an experiment's inputs and outputs live under ``root`` (see the module doc).

    Example:
        >>> Layout("/p").metrics("yolov8_raccoon").as_posix()
        '/p/data/metrics/yolov8_raccoon.json'
    """

    root: Path = Path(".")

    def records(self, dataset: str) -> Path:
        return Path(self.root) / "data" / "raw" / dataset

    def train_dir(self, name: str) -> Path:
        return Path(self.root) / "data" / "models" / name / "train"

    def saved_model(self, name: str) -> Path:
        return Path(self.root) / "data" / "models" / name / "saved_model"

    def export_dir(self, name: str) -> Path:
        return Path(self.root) / "data" / "models" / name / "export"

    def checkpoints(self, name: str) -> Path:
        return Path(self.root) / "data" / "checkpoints" / name

    def plots(self, name: str) -> Path:
        return Path(self.root) / "data" / "plots" / name

    def train_metrics(self, name: str) -> Path:
        return Path(self.root) / "data" / "metrics" / f"{name}_train.json"

    def metrics(self, name: str) -> Path:
        return Path(self.root) / "data" / "metrics" / f"{name}.json"

    def export_metrics(self, name: str) -> Path:
        return Path(self.root) / "data" / "metrics" / f"{name}_export.json"


def load_records(experiment: Experiment, layout: Layout) -> RecordSet:
    """The experiment's dataset, checked for the family and for a train and a held-out split.

    The held-out split is scored as ``test``: the dataset's ``test`` split, else its first
    of ``val``, ``valid``, ``validation`` (an Ultralytics ``data.yaml`` with ``train`` and
    ``val`` only).
    """
    folder = layout.records(experiment.dataset)
    records = RecordSet.load(folder)
    if not any(r.classes for r in records.records):
        raise ValueError(
            f"dataset {experiment.dataset!r} ({folder}): none of its "
            f"{len(records)} images holds a box; nothing to train on"
        )
    get_family(experiment.family).check_records(records)
    splits = {r.split for r in records.records}
    held_out = next((split for split in EVALUATION_SPLITS if split in splits), None)
    if "train" not in splits or held_out is None:
        missing = "'train'" if "train" not in splits else "held-out (test, val, valid)"
        raise ValueError(
            f"dataset {experiment.dataset!r} ({folder}) has no {missing} split "
            f"(splits: {sorted(map(str, splits))}); give it fractions"
        )
    if held_out != "test":
        renamed = [
            dataclasses.replace(r, split="test") if r.split == held_out else r
            for r in records.records
        ]
        records = dataclasses.replace(records, records=renamed)
    return records


def train(experiment: Experiment, *, root: str | os.PathLike = ".") -> dict:
    """Train ``experiment`` and save its model into ``data/models/NAME/train``.

    Interrupted (SIGINT, SIGTERM, a kill), the same call resumes from the last completed
    epoch and the same MLflow run; a finished run deletes its checkpoint.

    Returns:
        The training numbers (also in ``data/metrics/NAME_train.json``); ``{}`` on a
        non-chief worker, which trains along and writes nothing.
    """
    layout = Layout(Path(root))
    family = get_family(experiment.family)
    records = load_records(experiment, layout)
    init_dir = None
    if experiment.init_from:
        init_dir = layout.train_dir(experiment.init_from)
        if not (init_dir / RUN_FILE).exists():
            raise KdetError(
                init_dir,
                f"experiment {experiment.name!r} starts from {experiment.init_from!r}, which is "
                f"not trained yet (dvc repro train@{experiment.init_from})",
            )
    options = {**_under_root(experiment.train, layout.root), "init_dir": init_dir}
    strategy = options["strategy"] = distribute.get_strategy(options["strategy"])
    if not distribute.is_chief(strategy):
        with tempfile.TemporaryDirectory() as scratch:
            family.train(
                records,
                train_dir=Path(scratch),
                history_csv=None,
                checkpoint_dir=None,
                **options,
            )
        return {}

    key = _checkpoint_key(experiment, records, init_dir)
    checkpoint_dir = layout.checkpoints(experiment.name) / key
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    run_id_file = checkpoint_dir / "mlflow_run_id"
    resumed_run = run_id_file.read_text().strip() if run_id_file.exists() else None
    train_dir = layout.train_dir(experiment.name)
    staging = train_dir.with_name(".train-staging")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    history_csv = layout.plots(experiment.name) / "history.csv"
    with tracking.start_run(
        experiment.dataset,
        run_name=experiment.name,
        params=None if resumed_run else experiment.params(),
        stage=f"train@{experiment.name}",
        tags={"family": experiment.family, "dataset": experiment.dataset},
        run_id=resumed_run,
    ) as run:
        run_id_file.write_text(run.info.run_id)
        start = time.perf_counter()
        numbers = family.train(
            records,
            train_dir=staging,
            history_csv=history_csv,
            checkpoint_dir=checkpoint_dir,
            **options,
        )
        numbers.setdefault("train_seconds", time.perf_counter() - start)
        if init_dir is not None and not history_csv.exists():
            # A training that adds no epoch (the sliding window reusing R-CNN's classifier)
            # carries the history of the model it starts from: the stage's plot output.
            _copy_atomically(layout.plots(experiment.init_from) / "history.csv", history_csv)
        history = read_history(history_csv)
        # The per-epoch callback already logged the history's columns (loss, ...) with
        # their steps; logging them again would add a step-0 point to each curve.
        tracking.log_metrics({k: v for k, v in numbers.items() if k not in history})
        if history:
            from kdet.training import plot_history

            tracking.log_figure(plot_history(history, experiment.name), "loss_curves.png")
        info = {
            "run_id": run.info.run_id,
            "experiment": experiment.name,
            "family": experiment.family,
            "dataset": experiment.dataset,
            "class_names": list(records.class_names),
            "records_sha256": records.fingerprint(),
        }
        _write_json(staging / RUN_FILE, info)
    shutil.rmtree(train_dir, ignore_errors=True)
    os.replace(staging, train_dir)
    _write_json(layout.train_metrics(experiment.name), numbers)
    shutil.rmtree(layout.checkpoints(experiment.name), ignore_errors=True)
    return numbers


def evaluate(experiment: Experiment, *, root: str | os.PathLike = ".") -> dict:
    """Evaluate the trained ``experiment`` on the test split and export its SavedModel.

    Writes ``data/metrics/NAME.json``, ``data/plots/NAME/`` (PR curve CSV, figures, the row's
    ``showcase`` images annotated by the SavedModel in ``showcase/``) and
    ``data/models/NAME/saved_model``, and logs all of it to the training's MLflow run.

    Returns:
        The metrics.
    """
    import matplotlib.pyplot as plt
    import mlflow

    from kdet import latency
    from kdet.metrics import write_pr_curves

    layout = Layout(Path(root))
    family = get_family(experiment.family)
    records = load_records(experiment, layout)
    showcase = _showcase_images(experiment, records)
    train_dir = layout.train_dir(experiment.name)
    run_file = train_dir / RUN_FILE
    if not run_file.exists():
        raise KdetError(train_dir, f"not trained yet (dvc repro train@{experiment.name})")
    info = json.loads(run_file.read_text())
    saved_model = layout.saved_model(experiment.name)
    result = family.evaluate(
        records, train_dir=train_dir, saved_model=saved_model, **experiment.evaluate
    )
    metrics = dict(result.metrics)
    if "latency_ms" not in metrics:
        images = latency.latency_images(records, class_names=result.latency_classes)
        metrics.update(latency.measure_latency(saved_model, images))
    _write_json(layout.metrics(experiment.name), metrics)
    plots = layout.plots(experiment.name)
    plots.mkdir(parents=True, exist_ok=True)
    if result.pr_result is not None:
        write_pr_curves(result.pr_result, plots / "pr_curve.csv")
    for name, rows in result.tables.items():
        with open(plots / name, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["empty"])
            writer.writeheader()
            writer.writerows(rows)
    for name, figure in result.figures.items():
        figure.savefig(plots / name, dpi=100)

    tracking.configure()
    with mlflow.start_run(run_id=info["run_id"]):
        tracking.log_metrics(flat_metrics(metrics))
        mlflow.log_dict(metrics, "evaluation/metrics.json")
        for name, figure in result.figures.items():
            tracking.log_figure(figure, name)
            plt.close(figure)
        tracking.log_saved_model(saved_model)
        for path in _annotate(showcase, saved_model, plots / "showcase"):
            mlflow.log_artifact(str(path), "showcase")
    return metrics


def _showcase_images(experiment: Experiment, records: RecordSet) -> list[Path]:
    """The paths of ``experiment.showcase``'s images, found by file name in any split."""
    by_name = {}
    for record in records.records:
        by_name.setdefault(Path(record.image).name, records.image_path(record))
    missing = [name for name in experiment.showcase if name not in by_name]
    if missing:
        raise KdetError(
            records.root,
            f"showcase image {missing[0]!r} (row {experiment.name}) is not in the dataset",
        )
    return [by_name[name] for name in experiment.showcase]


def _annotate(images: list[Path], saved_model: Path, folder: Path) -> list[Path]:
    """Each image with the SavedModel's detections drawn (as ``kdet predict`` draws them),
    written to ``folder/STEM.jpg``."""
    if not images:
        return []
    import cv2

    from kdet.data.decode import read_image
    from kdet.detector import Detector, annotate

    detector = Detector(saved_model)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for source in images:
        image = read_image(str(source)).numpy()
        _, encoded = cv2.imencode(".jpg", annotate(image, detector(image)))
        path = folder / f"{Path(source).stem}.jpg"
        atomic.write_bytes(path, encoded.tobytes())
        written.append(path)
    return written


def publish(experiment: Experiment, *, root: str | os.PathLike = ".", **options) -> dict:
    """Register the evaluated ``experiment``'s SavedModel in MLflow and move its alias.

    Args:
        **options: ``alias`` and ``proposals`` of :func:`kdet.serving.publish_saved_model`.
    """
    from kdet.serving import publish_saved_model

    layout = Layout(Path(root))
    family = get_family(experiment.family)
    return publish_saved_model(
        layout.saved_model(experiment.name),
        dataset=experiment.dataset,
        family=experiment.family,
        metrics_file=layout.metrics(experiment.name),
        registered_model=experiment.registered_model_name(),
        metric=family.rank_by,
        **options,
    )


def seed_twins(
    rows: Mapping[str, Mapping], seeds: Sequence[int], where: str = "seeds"
) -> list[tuple[str, int, Experiment]]:
    """Each row once per seed, row by row: ``(NAME, S, experiment NAME_seedS)``.

    The twin is the row with ``train.seed: S``. Rows keep their order, except that a row that
    starts from another row of ``rows`` (``init_from``) starts from that row's twin of the
    same seed, and comes after it.

    Raises:
        ValueError: no seed, a repeated seed, rows that start from each other in a circle,
            or a row :meth:`Experiment.from_row` refuses (named ``where.NAME_seedS``).

    Example:
        >>> rows = {"w": {"family": "sliding_window", "dataset": "d", "init_from": "r",
        ...               "train": {}, "evaluate": {}},
        ...         "r": {"family": "rcnn", "dataset": "d", "train": {}, "evaluate": {}}}
        >>> [(exp.name, exp.init_from) for _, _, exp in seed_twins(rows, [1])]
        [('r_seed1', None), ('w_seed1', 'r_seed1')]
    """
    seeds = list(seeds)
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct, at least one. Received: {seeds}")
    starts_from = {
        n: r.get("init_from") if isinstance(r, Mapping) else None for n, r in rows.items()
    }
    order: list[str] = []  # the listed order, each row after the row it starts from
    while len(order) < len(rows):
        ready = next(
            (
                name
                for name, init in starts_from.items()
                if name not in order and (init not in rows or init in order)
            ),
            None,
        )
        if ready is None:
            circle = sorted(set(rows) - set(order))
            raise ValueError(f"rows {circle} start from each other (init_from) in a circle")
        order.append(ready)
    twins = []
    for name in order:
        for seed in seeds:
            row = rows[name]
            if isinstance(row, Mapping):
                row = dict(row)
                if isinstance(row.get("train"), Mapping):
                    row["train"] = {**row["train"], "seed": seed}
                if starts_from[name] in rows:
                    row["init_from"] = f"{starts_from[name]}_seed{seed}"
            twins.append((name, seed, Experiment.from_row(f"{name}_seed{seed}", row, where)))
    return twins


def seed_summary(results: Mapping[str, Mapping[int, Mapping[str, float]]]) -> dict:
    """Mean and spread over the seeds of every number all of a row's seeds report.

    Args:
        results: ``{row: {seed: {metric: number}}}``.

    Returns:
        ``{row: {"mean": {...}, "std": {...}, "per_seed": {seed: {...}}}}``; ``std`` is the
        sample standard deviation (0 for a single seed).

    Example:
        >>> seed_summary({"r": {1: {"mAP50": 0.5}, 2: {"mAP50": 0.7, "mAP": 0.3}}})["r"]["mean"]
        {'mAP50': 0.6}
    """
    summary = {}
    for row, per_seed in results.items():
        keys = [k for k in next(iter(per_seed.values())) if all(k in m for m in per_seed.values())]
        values = {k: [float(m[k]) for m in per_seed.values()] for k in keys}
        summary[row] = {
            "mean": {k: statistics.fmean(v) for k, v in values.items()},
            "std": {k: statistics.stdev(v) if len(v) > 1 else 0.0 for k, v in values.items()},
            "per_seed": {seed: dict(metrics) for seed, metrics in per_seed.items()},
        }
    return summary


def read_history(path: str | os.PathLike) -> dict[str, list[float]]:
    """A Keras ``CSVLogger`` file as ``{column: [value per epoch]}`` (``{}`` if absent)."""
    path = Path(path)
    if not path.exists():
        return {}
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    columns = [c for c in (rows[0] if rows else {}) if c != "epoch"]
    return {c: [_number(r[c]) for r in rows] for c in columns}


def _number(text) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):  # CSVLogger writes "NA" for a value missing that epoch
        return float("nan")


def flat_metrics(metrics: Mapping) -> dict[str, float]:
    """The numeric leaves of nested metrics, named as ``dvc metrics show`` names them.

    Example:
        >>> flat_metrics({"mean_iou": 0.9, "per_class": {"airplanes": {"mean_iou": 0.8}},
        ...               "confusion_matrix": {"labels": ["airplanes"], "counts": [[3]]}})
        {'mean_iou': 0.9, 'per_class.airplanes.mean_iou': 0.8}
    """
    flat = {}
    for key, value in metrics.items():
        if isinstance(value, Mapping):
            flat.update({f"{key}.{k}": v for k, v in flat_metrics(value).items()})
        elif isinstance(value, int | float) and not isinstance(value, bool):
            flat[key] = value
    return flat


def _under_root(options: Mapping, root: Path) -> dict:
    """``options`` with relative ``*cache_dir`` paths (at any depth) placed under ``root``."""
    placed = {}
    for key, value in options.items():
        if isinstance(value, Mapping):
            value = _under_root(value, root)
        elif key.endswith("cache_dir") and value is not None and not Path(value).is_absolute():
            value = str(Path(root) / value)
        placed[key] = value
    return placed


def _checkpoint_key(experiment: Experiment, records: RecordSet, init_dir: Path | None) -> str:
    """A key that changes with anything that would make an old checkpoint wrong."""
    parts = [experiment.params(), records.fingerprint()]
    if init_dir is not None:
        parts.append(json.loads((init_dir / RUN_FILE).read_text())["run_id"])
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _write_json(path: Path, payload: Mapping) -> None:
    """Write ``payload`` as JSON atomically (see :mod:`kdet.atomic`)."""
    atomic.write_text(path, json.dumps(payload, indent=2, sort_keys=True, default=str))


def _copy_atomically(source: Path, path: Path) -> None:
    """Copy the history ``source`` of the training this one starts from to ``path``."""
    if not source.exists():
        raise KdetError(source, "missing: the training this one starts from left no history")
    atomic.copy_file(source, path)
