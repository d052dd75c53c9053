"""DVC stage ``fast_rcnn_raccoon``: train and evaluate the shared-feature (Fast R-CNN) mode.

Same data, proposals and evaluation as ``rcnn_raccoon``; the backbone runs once per
image and a head classifies and refines every proposal. Exports the detector (image +
proposals signature) and logs the MLflow run ``fast_rcnn`` in experiment ``raccoon``.
Parameters: ``params.yaml: rcnn.fast_rcnn``, ``rcnn.fast_rcnn_detector``;
``rcnn.fast_rcnn.strategy`` picks the ``tf.distribute`` strategy (``batch_size`` is per
replica). On a non-chief worker of a multi-worker cluster the script trains along and
writes nothing.
"""

import json
from pathlib import Path

import dvc.api

from kdet import distribute, tracking
from kdet.datasets.records import RecordSet
from kdet.export import export_proposal_detector
from kdet.metrics import plot_pr_curves
from kdet.models.rcnn.evaluation import evaluate_detector, write_report
from kdet.models.rcnn.fast_rcnn import FastRCNNDetector, train_fast_rcnn
from kdet.models.rcnn.proposals import load_proposals
from kdet.training import plot_history

NAME = "fast_rcnn_raccoon"
MODEL_DIR = Path("data/models") / NAME
PROPOSALS = Path("data/features/raccoon_proposals")


def main() -> None:
    params = dvc.api.params_show(stages=NAME)["rcnn"]
    records = RecordSet.load("data/raw/raccoon")
    proposals = load_proposals(PROPOSALS / "proposals.npz")
    seconds = json.loads((PROPOSALS / "seconds.json").read_text())
    train_params = params["fast_rcnn"]
    train_params = {**train_params, "strategy": distribute.get_strategy(train_params["strategy"])}
    if not distribute.is_chief(train_params["strategy"]):
        train_fast_rcnn(records.split("train"), proposals, **train_params)
        return
    with tracking.start_run("raccoon", run_name="fast_rcnn", params=params, stage=NAME):
        model, info = train_fast_rcnn(
            records.split("train"),
            proposals,
            checkpoint_dir=MODEL_DIR / "checkpoints",
            history_csv=f"data/plots/{NAME}/history.csv",
            log_to_mlflow=True,
            **train_params,
        )
        model.save(MODEL_DIR / "model.keras")
        tracking.log_figure(plot_history(info["history"], "Fast R-CNN"), "history.png")
        detector = FastRCNNDetector(model, **params["fast_rcnn_detector"])
        report = evaluate_detector(
            detector, records.split("test"), proposals=proposals, proposal_seconds=seconds
        )
        history = info["history"]
        metrics = write_report(
            report,
            metrics_path=f"data/metrics/{NAME}.json",
            plots_dir=f"data/plots/{NAME}",
            extra_metrics={"class_accuracy": history["val_class_label_accuracy"][-1]},
        )
        tracking.log_metrics(metrics)
        tracking.log_figure(plot_pr_curves(report.result), "pr_curve.png")
        export_proposal_detector(
            MODEL_DIR / "saved_model", detector.detect_eager, records.class_names, model
        )
        tracking.log_saved_model(MODEL_DIR / "saved_model")
    print(json.dumps(metrics))


if __name__ == "__main__":
    main()
