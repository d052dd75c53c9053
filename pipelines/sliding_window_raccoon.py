"""DVC stage ``sliding_window_raccoon``: the R-CNN classifier as a sliding-window detector.

Image pyramid + sliding windows over the 40 raccoon test images with the classifier
trained by ``rcnn_raccoon``; no proposals. Exports the detector (plain image signature)
and logs the MLflow run ``sliding_window`` in experiment ``raccoon``. Parameters:
``params.yaml: rcnn.sliding_window``.
"""

import json
from pathlib import Path

import dvc.api
import keras

from kdet import tracking
from kdet.datasets.records import RecordSet
from kdet.export import export_detector
from kdet.metrics import plot_pr_curves
from kdet.models.rcnn.evaluation import evaluate_detector, write_report
from kdet.models.sliding_window import SlidingWindowDetector

NAME = "sliding_window_raccoon"
MODEL_DIR = Path("data/models") / NAME


def main() -> None:
    params = dvc.api.params_show(stages=NAME)["rcnn"]["sliding_window"]
    records = RecordSet.load("data/raw/raccoon")
    classifier = keras.saving.load_model("data/models/rcnn_raccoon/model.keras")
    with tracking.start_run("raccoon", run_name="sliding_window", params=params, stage=NAME):
        detector = SlidingWindowDetector(classifier, **params)
        report = evaluate_detector(detector, records.split("test"))
        metrics = write_report(
            report, metrics_path=f"data/metrics/{NAME}.json", plots_dir=f"data/plots/{NAME}"
        )
        tracking.log_metrics(metrics)
        tracking.log_figure(plot_pr_curves(report.result), "pr_curve.png")
        export_detector(
            MODEL_DIR / "saved_model", detector.detect_eager, records.class_names, classifier
        )
        tracking.log_saved_model(MODEL_DIR / "saved_model")
    print(json.dumps(metrics))


if __name__ == "__main__":
    main()
