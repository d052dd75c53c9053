"""DVC stages ``train_bbox_regressor`` and ``train_multiclass``: train a single-box model.

Usage: ``python pipelines/train_single_box.py GROUP`` where GROUP is ``bbox_regressor`` or
``multiclass`` (parameters from ``params.yaml: GROUP.classes/.model/.train``). Reads
``data/raw/caltech101``, writes ``data/models/GROUP/``, ``data/plots/GROUP/history.csv`` and
``data/metrics/GROUP_train.json`` (last epoch's metrics, timings) and logs an MLflow run in
the ``caltech101`` experiment. Prints ``run.json`` as one line.
``GROUP.train.strategy`` picks the ``tf.distribute`` strategy (``batch_size`` is per
replica); a non-chief worker of a multi-worker cluster trains along and writes nothing.
"""

import argparse
import json

import dvc.api

from kdet.models.single_box.experiment import run_training


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("group", choices=["bbox_regressor", "multiclass"])
    args = parser.parse_args()
    stage = f"train_{args.group}"
    params = dvc.api.params_show(stages=stage)[args.group]
    model_options = dict(params["model"])
    model = model_options.pop("name")
    train = dict(params["train"])
    image_size = tuple(train.pop("image_size"))
    feature_cache_dir = "data/features" if train.pop("feature_cache") else None
    checkpoint_dir = f"data/models/{args.group}/checkpoints" if train.pop("checkpoints") else None
    info = run_training(
        records_dir="data/raw/caltech101",
        model_dir=f"data/models/{args.group}",
        plots_dir=f"data/plots/{args.group}",
        metrics_path=f"data/metrics/{args.group}_train.json",
        run_name=args.group,
        experiment="caltech101",
        params=params,
        stage=stage,
        model=model,
        class_names=params["classes"],
        model_options=model_options,
        image_size=image_size,
        feature_cache_dir=feature_cache_dir,
        checkpoint_dir=checkpoint_dir,
        verbose=2,
        **train,
    )
    print(json.dumps(info))


if __name__ == "__main__":
    main()
