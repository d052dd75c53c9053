"""DVC stage ``rcnn_raccoon``: train the R-CNN classifier, evaluate the detector, export.

Trains on the author's 160 training images (crops labelled from the stored proposals),
evaluates on the 40 test images (mAP50, mAP, PR curve, per-image latency = the stored
selective-search time of the image + the detector call), exports the classifier and
the detector (image + proposals signature) as SavedModels, and logs one MLflow run
``rcnn`` in experiment ``raccoon``. Parameters: ``params.yaml: rcnn.classifier``,
``rcnn.detector``; ``rcnn.classifier.strategy`` picks the ``tf.distribute`` strategy
(``batch_size`` is per replica). On a non-chief worker of a multi-worker cluster the
script trains along and writes nothing.
"""

import json
from pathlib import Path

import dvc.api

from kdet import distribute, tracking
from kdet.datasets.records import RecordSet
from kdet.export import export_proposal_detector
from kdet.metrics import plot_pr_curves
from kdet.models.rcnn.detector import RCNNDetector
from kdet.models.rcnn.evaluation import evaluate_detector, write_report
from kdet.models.rcnn.proposals import load_proposals
from kdet.models.rcnn.train import train_rcnn_classifier
from kdet.training import plot_history

NAME = "rcnn_raccoon"
MODEL_DIR = Path("data/models") / NAME
PROPOSALS = Path("data/features/raccoon_proposals")


def main() -> None:
    params = dvc.api.params_show(stages=NAME)["rcnn"]
    records = RecordSet.load("data/raw/raccoon")
    proposals = load_proposals(PROPOSALS / "proposals.npz")
    seconds = json.loads((PROPOSALS / "seconds.json").read_text())
    train_params, detector_params = params["classifier"], params["detector"]
    train_params = {**train_params, "strategy": distribute.get_strategy(train_params["strategy"])}
    if not distribute.is_chief(train_params["strategy"]):
        train_rcnn_classifier(records.split("train"), proposals, **train_params)
        return
    with tracking.start_run("raccoon", run_name="rcnn", params=params, stage=NAME):
        classifier, info = train_rcnn_classifier(
            records.split("train"),
            proposals,
            checkpoint_dir=MODEL_DIR / "checkpoints",
            history_csv=f"data/plots/{NAME}/history.csv",
            log_to_mlflow=True,
            **train_params,
        )
        classifier.save(MODEL_DIR / "model.keras")
        tracking.log_figure(plot_history(info["history"], "R-CNN classifier"), "history.png")
        detector = RCNNDetector(classifier, **detector_params)
        report = evaluate_detector(
            detector, records.split("test"), proposals=proposals, proposal_seconds=seconds
        )
        crops = {
            f"crops/{split}/{label}": n
            for split, c in info["crops"].items()
            for label, n in c.items()
        }
        metrics = write_report(
            report,
            metrics_path=f"data/metrics/{NAME}.json",
            plots_dir=f"data/plots/{NAME}",
            extra_metrics={"class_accuracy": info["history"]["val_accuracy"][-1], **crops},
        )
        tracking.log_metrics(metrics)
        tracking.log_figure(plot_pr_curves(report.result), "pr_curve.png")
        classifier.export(str(MODEL_DIR / "classifier_saved_model"), verbose=False)
        export_proposal_detector(
            MODEL_DIR / "saved_model", detector.detect_eager, records.class_names, classifier
        )
        tracking.log_saved_model(MODEL_DIR / "saved_model")
        tracking.log_saved_model(MODEL_DIR / "classifier_saved_model", "classifier_saved_model")
    print(json.dumps(metrics))


if __name__ == "__main__":
    main()
