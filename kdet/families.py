"""The table that ``kdet train|evaluate|export`` dispatch on: one entry per model family.

Each family's training, evaluation and export run as DVC stages (``dvc.yaml``), so an
entry names those stages (``{dataset}`` is filled in) and the commands run exactly them:
``dvc repro STAGE``, or ``dvc exp run STAGE -S GROUP.KEY=VALUE`` when arguments are
overridden, so the run is recorded like any other experiment (``dvc exp show``, MLflow).
A family joins the CLI by adding one :class:`Family` to :data:`FAMILIES`.

Example:
    >>> FAMILIES["yolov8"] = Family(  # doctest: +SKIP
    ...     summary="KerasCV YOLOv8",
    ...     datasets=("raccoon", "shapes"),
    ...     train="train_yolov8_{dataset}",
    ...     evaluate="evaluate_yolov8_{dataset}",
    ...     export="evaluate_yolov8_{dataset}",
    ...     saved_model="data/models/yolov8_{dataset}/saved_model",
    ...     metrics="data/metrics/yolov8_{dataset}.json",
    ... )
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Family:
    """How the CLI runs one model family.

    Attributes:
        summary: one line shown by ``kdet train --help``.
        datasets: the datasets it has stages for; the first is the default.
        train, evaluate, export: DVC stage name templates (``{dataset}`` is replaced);
            ``export`` is the stage that writes the SavedModel.
        saved_model: path template of the SavedModel the export stage writes.
        metrics: path template of the evaluation's metrics JSON (``mAP50``, ...), which
            ``pipelines/publish.py`` registers with the model.
        rank_by: the metric (higher is better) that picks the registered model's
            ``champion`` among versions of every family publishing to it.
        registered_model: name template of the MLflow registered model; families that
            solve the same task on the same data share one, so their versions compete.
    """

    summary: str
    datasets: tuple[str, ...]
    train: str
    evaluate: str
    export: str
    saved_model: str
    metrics: str
    rank_by: str = "mAP50"
    registered_model: str = "{dataset}"

    def path(self, field: str, dataset: str | None = None) -> str:
        """``saved_model``, ``metrics`` or ``registered_model`` for ``dataset`` (default:
        the first)."""
        return getattr(self, field).format(dataset=dataset or self.datasets[0])

    def stage(self, command: str, dataset: str | None = None) -> str:
        """The DVC stage of ``command`` (``train``/``evaluate``/``export``) on ``dataset``."""
        dataset = dataset or self.datasets[0]
        if dataset not in self.datasets:
            raise ValueError(
                f"this family has no stages for dataset {dataset!r}; "
                f"available: {', '.join(self.datasets)}"
            )
        return getattr(self, command).format(dataset=dataset)


FAMILIES: dict[str, Family] = {
    "yolov8": Family(
        summary="KerasCV YOLOv8 (GPU when present)",
        datasets=("raccoon", "shapes", "open_images"),
        train="train_yolov8_{dataset}",
        evaluate="evaluate_yolov8_{dataset}",
        export="evaluate_yolov8_{dataset}",
        saved_model="data/models/yolov8_{dataset}/saved_model",
        metrics="data/metrics/yolov8_{dataset}.json",
    ),
    "bbox_regressor": Family(
        summary="backbone + dense head, one box per image (Caltech-101 airplanes)",
        datasets=("caltech101",),
        train="train_bbox_regressor",
        evaluate="evaluate_bbox_regressor",
        export="train_bbox_regressor",
        saved_model="data/models/bbox_regressor/saved_model",
        metrics="data/metrics/bbox_regressor.json",
        rank_by="mean_iou",
        registered_model="caltech101_airplanes",
    ),
    "multiclass": Family(
        summary="backbone + box head + softmax class head (Caltech-101, 3 classes)",
        datasets=("caltech101",),
        train="train_multiclass",
        evaluate="evaluate_multiclass",
        export="train_multiclass",
        saved_model="data/models/multiclass/saved_model",
        metrics="data/metrics/multiclass.json",
        rank_by="mean_iou",
    ),
    "rcnn": Family(
        summary="selective-search proposals + CNN classifier + NMS",
        datasets=("raccoon",),
        train="rcnn_raccoon",
        evaluate="rcnn_raccoon",
        export="rcnn_raccoon",
        saved_model="data/models/rcnn_raccoon/saved_model",
        metrics="data/metrics/rcnn_raccoon.json",
    ),
    "fast_rcnn": Family(
        summary="one backbone pass + RoIAlign over selective-search proposals",
        datasets=("raccoon",),
        train="fast_rcnn_raccoon",
        evaluate="fast_rcnn_raccoon",
        export="fast_rcnn_raccoon",
        saved_model="data/models/fast_rcnn_raccoon/saved_model",
        metrics="data/metrics/fast_rcnn_raccoon.json",
    ),
    "sliding_window": Family(
        summary="the R-CNN classifier over an image pyramid of windows + NMS",
        datasets=("raccoon",),
        train="rcnn_raccoon",
        evaluate="sliding_window_raccoon",
        export="sliding_window_raccoon",
        saved_model="data/models/sliding_window_raccoon/saved_model",
        metrics="data/metrics/sliding_window_raccoon.json",
    ),
}


def get_family(name: str) -> Family:
    """The entry of family ``name``; a ``ValueError`` listing the known ones otherwise."""
    if name not in FAMILIES:
        known = ", ".join(sorted(FAMILIES)) or "none registered yet"
        raise ValueError(f"unknown model family {name!r}; available: {known}")
    return FAMILIES[name]
