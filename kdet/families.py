"""The table the ``kdet train|evaluate|export`` commands dispatch on, one entry per family.

Each entry names (as ``"module:function"``, imported only when used) the same kdet
functions the family's DVC stages call, and the ``params.yaml`` group those stages read,
so ``kdet train NAME`` runs exactly what ``dvc repro`` runs for that family, with
``--set key=value`` overrides. Every function takes keyword arguments only and returns a
JSON-serialisable summary (metrics, written paths). A family joins the CLI by adding one
``Family(...)`` entry to :data:`FAMILIES`.

Example:
    >>> FAMILIES["yolov8"] = Family(  # doctest: +SKIP
    ...     summary="KerasCV YOLOv8 on raccoon / Open Images",
    ...     train="kdet.models.yolov8.stages:train_stage",
    ...     evaluate="kdet.models.yolov8.stages:evaluate_stage",
    ...     export="kdet.models.yolov8.stages:export_stage",
    ...     params_groups={"train": "train_yolov8", "evaluate": "evaluate_yolov8"},
    ... )
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from collections.abc import Callable, Mapping


@dataclasses.dataclass(frozen=True)
class Family:
    """How the CLI runs one model family.

    Attributes:
        summary: one line shown by ``kdet train --help``.
        train, evaluate, export: ``"module:function"`` of the stage functions (``None``
            when the family has no such step).
        params_groups: command -> dotted key of the ``params.yaml`` group its DVC stage
            reads (e.g. ``{"train": "train_rcnn"}`` or ``{"train": "yolov8.train"}``);
            that mapping becomes the keyword arguments.
    """

    summary: str
    train: str | None = None
    evaluate: str | None = None
    export: str | None = None
    params_groups: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def function(self, command: str) -> Callable:
        """Import and return the function of ``command`` (``train``/``evaluate``/``export``)."""
        target = getattr(self, command)
        if target is None:
            raise ValueError(f"this family has no '{command}' step")
        module, _, name = target.partition(":")
        return getattr(importlib.import_module(module), name)

    def describe(self, command: str) -> str:
        """The signature and docstring of the function behind ``command``."""
        function = self.function(command)
        doc = inspect.getdoc(function) or "(no docstring)"
        return f"{function.__module__}.{function.__name__}{inspect.signature(function)}\n\n{doc}"


FAMILIES: dict[str, Family] = {}


def get_family(name: str) -> Family:
    """The entry of family ``name``; a ``ValueError`` listing the known ones otherwise."""
    if name not in FAMILIES:
        known = ", ".join(sorted(FAMILIES)) or "none registered yet"
        raise ValueError(f"unknown model family {name!r}; available: {known}")
    return FAMILIES[name]
