"""DVC stage ``benchmark_rcnn_raccoon``: R-CNN inference, the tutorial's way vs kdet's.

Both ways use the classifier trained by ``rcnn_raccoon`` on the 40 raccoon test images,
timed per image from a decoded image to detections (selective search included, run
live: the timing is the point). Prints both latencies, the ratio and both mAP@0.5.
Parameters: ``params.yaml: rcnn.benchmark`` (and the detector thresholds of
``rcnn.detector``).
"""

import json
from pathlib import Path

import dvc.api
import keras

from kdet.datasets.records import RecordSet
from kdet.models.rcnn.benchmark import run_benchmark

NAME = "benchmark_rcnn_raccoon"


def main() -> None:
    params = dvc.api.params_show(stages=NAME)["rcnn"]
    records = RecordSet.load("data/raw/raccoon").split("test")
    classifier = keras.saving.load_model("data/models/rcnn_raccoon/model.keras")
    detector = params["detector"]
    results = run_benchmark(
        classifier,
        records,
        kdet_settings=params["benchmark"]["kdet_settings"],
        tutorial_proposals=params["benchmark"]["tutorial_proposals"],
        score_threshold=detector["score_threshold"],
        iou_threshold=detector["iou_threshold"],
        max_detections=detector["max_detections"],
    )
    tutorial, best = results["tutorial"], results["best"]
    for run in results["kdet"]:
        print(f"kdet {run}")
    print(f"tutorial way: {tutorial['latency_ms']:.1f} ms/image, mAP@0.5 {tutorial['mAP50']:.4f}")
    metrics = {f"tutorial/{k}": v for k, v in tutorial.items()}
    if best is None:
        print("no kdet setting reached the tutorial's mAP@0.5")
    else:
        print(
            f"kdet fastest ({best}): {best['latency_ms']:.1f} ms/image, "
            f"mAP@0.5 {best['mAP50']:.4f}; speed-up {results['speedup']:.1f}x"
        )
        metrics.update({f"kdet/{k}": v for k, v in best.items() if v is not None})
        metrics["speedup"] = results["speedup"]
    Path("data/metrics").mkdir(parents=True, exist_ok=True)
    Path(f"data/metrics/{NAME}.json").write_text(json.dumps(metrics, indent=2))
    plots = Path(f"data/plots/{NAME}")
    plots.mkdir(parents=True, exist_ok=True)
    rows = [{"way": "tutorial", **tutorial}] + [
        {"way": f"kdet {r.get('mode', 'fast')}@{r.get('max_side')}/{r.get('max_proposals')}", **r}
        for r in results["kdet"]
    ]
    (plots / "latency.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
