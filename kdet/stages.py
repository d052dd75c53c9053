"""What ``kdet train|evaluate|export`` do inside and outside a kdet (DVC) project.

Inside a project (a folder with ``dvc.yaml`` and the ``experiments:`` / ``finetune:``
tables in ``params.yaml``), a family on a dataset that has a row runs that row's DVC
stage: ``dvc repro STAGE``, or ``dvc exp run STAGE -S ++TABLE.ROW.train.KEY=VALUE`` when
options change, so the run is a DVC experiment like any other. Anywhere else (or for a
dataset without a row) the same runner, :mod:`kdet.experiment`, runs directly and logs to
``./mlflow.db``, with the same outputs under ``./data``.

Example:
    >>> qualify_option("epochs=2", get_family("yolov8").defaults)  # doctest: +SKIP
    ('train.epochs', 2)
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml

from kdet.errors import KdetError
from kdet.families import get_family

TABLES = {
    "experiments": ("train", "evaluate", "publish"),
    "finetune": ("finetune", "evaluate_finetuned", "publish_finetuned"),
}


def read_params(root: str | os.PathLike) -> dict:
    """``params.yaml`` of the project at ``root`` (``{}`` when there is none)."""
    path = Path(root) / "params.yaml"
    return (yaml.safe_load(path.read_text()) or {}) if path.exists() else {}


def is_project(root: str | os.PathLike) -> bool:
    """Whether ``root`` is a kdet project: ``dvc.yaml`` and an experiments table."""
    return (Path(root) / "dvc.yaml").exists() and "experiments" in read_params(root)


def find_row(root: str | os.PathLike, family: str, dataset: str) -> tuple[str, str] | None:
    """``(table, row name)`` of the project's row training ``family`` on ``dataset``."""
    params = read_params(root)
    for table in TABLES:
        for name, row in (params.get(table) or {}).items():
            if isinstance(row, Mapping) and (row.get("family"), row.get("dataset")) == (
                family,
                dataset,
            ):
                return table, name
    return None


def stage_name(table: str, name: str, step: str) -> str:
    """The DVC stage of ``step`` (``train``, ``evaluate``, ``publish``) of a row."""
    steps = dict(zip(("train", "evaluate", "publish"), TABLES[table], strict=True))
    return f"{steps[step]}@{name}"


def qualify_option(assignment: str, defaults: Mapping) -> tuple[str, object]:
    """``"epochs=2"`` -> ``("train.epochs", 2)`` using a family's default options.

    ``KEY`` may be short (``epochs``) when exactly one place in the defaults holds it, or
    dotted from the group (``evaluate.decoder.iou_threshold``); ``VALUE`` is read as YAML.

    Raises:
        ValueError: not ``KEY=VALUE``, an unknown key, or a short key found twice.
    """
    key, sep, text = assignment.partition("=")
    if not sep or not key:
        raise ValueError(f"--set: expected KEY=VALUE, got {assignment!r}")
    value = yaml.safe_load(text)
    leaves = _leaf_keys(defaults)
    if key in leaves:
        return key, value
    matches = [leaf for leaf in leaves if leaf.split(".", 1)[1] == key]
    if len(matches) == 1:
        return matches[0], value
    if matches:
        raise ValueError(
            f"--set {key}: is in several option groups; give one of: {', '.join(sorted(matches))}"
        )
    raise ValueError(
        f"--set {key}: is not an option of this family; give one of: {', '.join(sorted(leaves))}"
    )


def _leaf_keys(values, prefix: str = "") -> list[str]:
    if not isinstance(values, Mapping) or (prefix.count(".") >= 2 and not values):
        return [prefix.rstrip(".")]
    keys = []
    for key, value in values.items():
        keys += _leaf_keys(value, f"{prefix}{key}.")
    return keys


def nest(options: Mapping[str, object]) -> dict:
    """``{"train.epochs": 2}`` -> ``{"train": {"epochs": 2}}``."""
    nested: dict = {}
    for dotted, value in options.items():
        *parents, leaf = dotted.split(".")
        node = nested
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return nested


def describe_family(family: str) -> str:
    """A family's options with their defaults, for ``kdet train FAMILY --describe``."""
    spec = get_family(family)
    lines = [f"family {spec.name}: {spec.summary}", "options (change with --set KEY=VALUE):"]
    for leaf in sorted(_leaf_keys(spec.defaults)):
        value = spec.defaults
        for part in leaf.split("."):
            value = value[part]
        lines.append(f"  {leaf} = {value!r}")
    return "\n".join(lines)


def run_stage(
    stage: str, sets: Sequence[str] = (), *, root: str | os.PathLike, metrics: Sequence[str] = ()
) -> dict:
    """Run ``stage`` through DVC in the project at ``root``; DVC's output goes to stderr.

    Args:
        stage: a stage name (``train@yolov8_raccoon``).
        sets: fully qualified ``params.yaml`` overrides (``++experiments.X.train.epochs=2``;
            ``++`` adds a key the row does not list yet): the stage then runs as
            ``dvc exp run -S ...``.
        metrics: metrics JSON files (relative to ``root``) to read back.

    Returns:
        ``{"stage", "command", "metrics": {file: content}}``.
    """
    dvc = [sys.executable, "-m", "dvc"]
    if sets:
        command = [*dvc, "exp", "run", stage, *(arg for s in sets for arg in ("-S", s))]
    else:
        command = [*dvc, "repro", stage]
    # Stage commands say `python ...`: give them this interpreter, as an activated venv does.
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    # stdout=2: DVC and the stage print to our stderr; our stdout keeps one JSON line.
    result = subprocess.run(command, cwd=root, stdout=2, env={**os.environ, "PATH": path})
    shown = " ".join(["dvc", *command[3:]])
    if result.returncode:
        raise KdetError(stage, f"`{shown}` failed with exit status {result.returncode}")
    read = {}
    for name in metrics:
        file = Path(root) / name
        if file.exists():
            read[name] = json.loads(file.read_text())
    return {"stage": stage, "command": shown, "metrics": read}


def dataset_slug(path: str) -> str:
    """A dataset name made from a folder or file path (``~/data/My VOC/`` -> ``my_voc``)."""
    stem = Path(str(path).rstrip("/")).name
    if stem in ("data.yaml", "data.yml") or stem.endswith(".json"):
        stem = Path(str(path).rstrip("/")).parent.name + "_" + Path(stem).stem
    return re.sub(r"[^a-z0-9]+", "_", stem.lower()).strip("_") or "dataset"
