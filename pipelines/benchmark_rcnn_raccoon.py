"""DVC stage ``benchmark_rcnn_raccoon``: R-CNN inference, the tutorial's way vs kdet's.

Both ways use the classifier trained by ``rcnn_raccoon`` on the 40 raccoon test images,
timed per image from a decoded image to detections (selective search included, run
live: the timing is the point). Prints both latencies, the ratio and both mAP@0.5. The
Fast R-CNN model of ``fast_rcnn_raccoon`` is timed alongside for comparison (its own
model, so it is not a candidate for the same-classifier ratio). Parameters:
``params.yaml: rcnn.benchmark`` (and the ``evaluate`` thresholds of the experiments
``rcnn_raccoon`` and ``fast_rcnn_raccoon``).
"""

import json
from pathlib import Path

import keras
import yaml

from kdet.atomic import write_text
from kdet.datasets.records import RecordSet
from kdet.experiment import Experiment, Layout
from kdet.models.rcnn.benchmark import kdet_detect, run_benchmark
from kdet.models.rcnn.fast_rcnn import FastRCNNDetector

NAME = "benchmark_rcnn_raccoon"


def main() -> None:
    params = yaml.safe_load(Path("params.yaml").read_text())
    rcnn, fast_rcnn = (
        Experiment.from_row(name, params["experiments"][name])
        for name in ("rcnn_raccoon", "fast_rcnn_raccoon")
    )
    params = params["rcnn"]
    records = RecordSet.load(Layout().records(rcnn.dataset)).split("test")
    classifier = keras.saving.load_model(Layout().train_dir(rcnn.name) / "model.keras")
    detector = rcnn.evaluate
    # threshold_on_validation picks the served threshold in evaluate@; here mAP is scored
    # above the row's score_threshold, as there
    fast_options = {k: v for k, v in fast_rcnn.evaluate.items() if k != "threshold_on_validation"}
    fast = FastRCNNDetector(
        keras.saving.load_model(Layout().train_dir(fast_rcnn.name) / "model.keras"),
        **fast_options,
    )
    search = params["benchmark"]["fast_rcnn_search"]
    results = run_benchmark(
        classifier,
        records,
        kdet_settings=params["benchmark"]["kdet_settings"],
        tutorial_proposals=params["benchmark"]["tutorial_proposals"],
        score_threshold=detector["score_threshold"],
        iou_threshold=detector["iou_threshold"],
        max_detections=detector["max_detections"],
        others={"fast_rcnn": lambda image: kdet_detect(fast, image, **search)},
    )
    tutorial, best = results["tutorial"], results["best"]
    for run in results["kdet"]:
        print(f"kdet {run}")
    print(
        f"tutorial way: {tutorial['latency_ms']:.1f} ms/image (median), "
        f"mAP@0.5 {tutorial['mAP50']:.4f}"
    )
    metrics = {f"tutorial/{k}": v for k, v in tutorial.items()}
    if best is None:
        print("no kdet setting reached the tutorial's mAP@0.5")
    else:
        print(
            f"kdet fastest ({best}): {best['latency_ms']:.1f} ms/image (median), "
            f"mAP@0.5 {best['mAP50']:.4f}; speed-up {results['speedup']:.1f}x (median), "
            f"{results['speedup_total']:.1f}x (total time)"
        )
        metrics.update({f"kdet/{k}": v for k, v in best.items() if v is not None})
        metrics["speedup"] = results["speedup"]
        metrics["speedup_total"] = results["speedup_total"]
    fast_run = results["others"]["fast_rcnn"]
    print(
        f"Fast R-CNN ({search}): {fast_run['latency_ms']:.1f} ms/image (median), "
        f"mAP@0.5 {fast_run['mAP50']:.4f}"
    )
    metrics.update({f"fast_rcnn/{k}": v for k, v in fast_run.items()})
    write_text(Path(f"data/metrics/{NAME}.json"), json.dumps(metrics, indent=2))
    plots = Path(f"data/plots/{NAME}")
    rows = (
        [{"way": "tutorial", **tutorial}]
        + [
            {
                "way": f"kdet {r.get('mode', 'fast')}@{r.get('max_side')}/{r.get('max_proposals')}",
                **r,
            }
            for r in results["kdet"]
        ]
        + [{"way": "fast_rcnn", **fast_run}]
    )
    write_text(plots / "latency.json", json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
