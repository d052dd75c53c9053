"""Tiny datasets and experiment rows for the runner's tests (:mod:`kdet.experiment`).

Every family gets overrides that train in seconds on 64x64 images; caches go under the
test's folder (the families' default cache folders are relative to the working directory).
"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow

from kdet import experiment, tracking
from kdet.datasets import fetch
from kdet.experiment import Experiment, Layout
from kdet.families import get_family


def proposals(root: Path) -> dict:
    return {"mode": "fast", "max_side": 64, "processes": 1, "cache_dir": str(root / "proposals")}


def tiny_options(family: str, root: Path) -> dict:
    """``{"train": ..., "evaluate": ...}`` overrides that make ``family`` train in seconds."""
    root = Path(root)
    single_box = {
        "image_size": [64, 64],
        "epochs": 1,
        "batch_size": 8,
        "augment": False,
        "feature_cache_dir": str(root / "features"),
    }
    classifier = {
        "input_size": 32,
        "epochs": 1,
        "batch_size": 16,
        "paper": {"max_positives": 4, "max_negatives": 12},
        "augment": False,
        "proposals": proposals(root),
    }
    return {
        "yolov8": {
            "train": {"image_size": 64, "batch_size": 4, "epochs": 1, "precision": "float32"},
            "evaluate": {"batch_size": 4},
        },
        "retinanet": {
            "train": {"image_size": 64, "batch_size": 4, "epochs": 1, "augment": False},
            "evaluate": {"batch_size": 4},
        },
        "bbox_regressor": {
            "train": {**single_box, "model": {"box_units": [8]}},
            "evaluate": {},
        },
        "multiclass": {
            "train": {**single_box, "model": {"box_units": [8], "class_units": [8]}},
            "evaluate": {},
        },
        "rcnn": {"train": classifier, "evaluate": {"max_proposals": 50}},
        "fast_rcnn": {
            "train": {
                "image_size": 64,
                "epochs": 1,
                "batch_size": 4,
                "dense_units": 16,
                "rois_per_image": 8,
                "augment": False,
                "proposals": proposals(root),
            },
            "evaluate": {"max_proposals": 50},
        },
        "sliding_window": {
            "train": classifier,
            "evaluate": {
                "window_size": [32, 32],
                "step": 16,
                "image_side": 64,
                "window_grid": {
                    "window_size": [[32, 32]],
                    "step": [16, 32],
                    "scale": [1.5],
                    "image_side": [64],
                },
                "batch_size": 64,
                "max_detections": 10,
            },
        },
    }[family]


def tiny_row(family: str, dataset: str, root: Path, **extra) -> dict:
    return {"family": family, "dataset": dataset, **tiny_options(family, root), **extra}


def make_shapes(root: Path, name: str = "shapes", *, one_box: bool = False, num_images=24):
    """A small shapes dataset in ``root/data/raw/NAME`` (exactly one box per image when
    ``one_box``)."""
    return fetch(
        "shapes",
        Layout(Path(root)).records(name),
        num_images=num_images,
        image_size=64,
        max_objects=1 if one_box else 3,
        seed=0,
    )


def dataset_for(family: str, root: Path) -> str:
    """Make the dataset ``family`` trains on in ``root``; return its name."""
    if get_family(family).one_box_per_image:
        records = make_shapes(root, "shapes_one", one_box=True)
        assert all(len(r.classes) == 1 for r in records.records)
        return "shapes_one"
    make_shapes(root)
    return "shapes"


def run(root: Path, name: str, row: dict) -> tuple[Experiment, dict, dict]:
    """Train then evaluate the row ``name`` under ``root``; return the experiment, the
    training numbers and the metrics."""
    exp = Experiment.from_row(name, row)
    numbers = experiment.train(exp, root=root)
    metrics = experiment.evaluate(exp, root=root)
    return exp, numbers, metrics


def run_id(root: Path, name: str) -> str:
    return json.loads((Layout(Path(root)).train_dir(name) / experiment.RUN_FILE).read_text())[
        "run_id"
    ]


def mlflow_run(run_id_: str):
    tracking.configure()
    return mlflow.get_run(run_id_)
