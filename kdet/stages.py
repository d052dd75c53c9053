"""Run one DVC stage of the project from Python, with parameter overrides.

``kdet train|evaluate|export`` use this so the command line runs exactly the code of the
DVC pipeline: ``dvc repro STAGE`` without overrides, ``dvc exp run STAGE -S GROUP.KEY=VALUE``
with them (the experiment then shows in ``dvc exp show`` and its MLflow run like any other).
An override's ``KEY`` may be short (``epochs``) when exactly one of the stage's parameter
groups holds it, or fully qualified (``train_yolov8.raccoon.epochs``).

Example:
    >>> run_stage("train_yolov8_raccoon", ["epochs=2"], root=".")  # doctest: +SKIP
    {'stage': 'train_yolov8_raccoon', 'command': 'dvc exp run ...', 'metrics': {...}}
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

from kdet.errors import KdetError


def stage_spec(stage: str, root: str | os.PathLike) -> dict:
    """The ``dvc.yaml`` entry of ``stage`` in the project at ``root``."""
    dvc_yaml = Path(root) / "dvc.yaml"
    if not dvc_yaml.exists():
        raise KdetError(root, "no dvc.yaml here: run kdet train/evaluate/export in the project")
    stages = (yaml.safe_load(dvc_yaml.read_text()) or {}).get("stages", {})
    if stage not in stages:
        raise KdetError(dvc_yaml, f"has no stage {stage!r}")
    return stages[stage]


def param_groups(spec: dict, root: str | os.PathLike) -> dict[str, object]:
    """``{group: current value}`` for each ``params.yaml`` key the stage lists."""
    params = yaml.safe_load((Path(root) / "params.yaml").read_text()) or {}
    groups = {}
    for entry in spec.get("params", []):
        if isinstance(entry, str):  # entries naming other params files are not overridable
            groups[entry] = _lookup(params, entry)
    return groups


def _lookup(params, dotted: str):
    for key in dotted.split("."):
        if not isinstance(params, dict) or key not in params:
            return None
        params = params[key]
    return params


def qualify(assignment: str, groups: dict[str, object]) -> str:
    """``"epochs=2"`` -> ``"train_yolov8.raccoon.epochs=2"`` using the stage's groups."""
    key, sep, value = assignment.partition("=")
    if not sep or not key:
        raise ValueError(f"expected KEY=VALUE, got {assignment!r}")
    if any(key == group or key.startswith(f"{group}.") for group in groups):
        return assignment
    matches = [group for group, values in groups.items() if _lookup(values, key) is not None]
    if len(matches) != 1:
        keys = sorted(k for values in groups.values() for k in _leaf_keys(values))
        problem = "is in several parameter groups" if matches else "is not a parameter"
        raise ValueError(
            f"{key!r} {problem} of this stage; give one of: {', '.join(keys) or '(none)'}"
        )
    return f"{matches[0]}.{key}={value}"


def _leaf_keys(values, prefix: str = "") -> list[str]:
    if not isinstance(values, dict):
        return [prefix.rstrip(".")]
    keys = []
    for key, value in values.items():
        keys += _leaf_keys(value, f"{prefix}{key}.")
    return keys


def describe_stage(stage: str, root: str | os.PathLike) -> str:
    """A readable summary: command, parameters with their current values, outputs."""
    spec = stage_spec(stage, root)
    lines = [f"stage {stage}: {spec.get('cmd')}"]
    for group, values in param_groups(spec, root).items():
        lines.append(f"parameters in params.yaml {group} (change with --set KEY=VALUE):")
        lines += [f"  {key} = {_lookup(values, key)!r}" for key in sorted(_leaf_keys(values))]
    lines.append("writes: " + ", ".join(_names(spec.get("outs", []) + spec.get("metrics", []))))
    return "\n".join(lines)


def _names(entries) -> list[str]:
    return [next(iter(e)) if isinstance(e, dict) else str(e) for e in entries]


def run_stage(stage: str, overrides: Sequence[str] = (), *, root: str | os.PathLike) -> dict:
    """Run ``stage`` through DVC in the project at ``root``; DVC's output goes to stderr.

    Returns:
        ``{"stage", "command", "metrics"}`` with the content of the stage's metrics files.
    """
    spec = stage_spec(stage, root)
    groups = param_groups(spec, root)
    sets = [qualify(text, {g: v or {} for g, v in groups.items()}) for text in overrides]
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
    metrics = {}
    for name in _names(spec.get("metrics", [])):
        file = Path(root) / name
        if file.suffix == ".json" and file.exists():
            metrics[name] = json.loads(file.read_text())
    return {"stage": stage, "command": shown, "metrics": metrics}
