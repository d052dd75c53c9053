"""The multi-class benchmark (tutorial way vs kdet way) end to end on a tiny one-box set."""

import json

from pipelines.benchmark_multiclass import main, subset
from tests.runner_helpers import make_shapes


def test_subset_takes_that_many_images_of_each_class(tmp_path):
    records = make_shapes(tmp_path, "shapes_one", one_box=True, num_images=24)
    chosen = subset(records, 2, seed=0)
    counts = [sum(r.classes[0] == c for r in chosen.records) for c in range(3)]
    assert counts == [2, 2, 2] and subset(records, 0, seed=0) is records


def test_both_ways_run_and_the_report_is_written(tmp_path):
    records = make_shapes(tmp_path, "shapes_one", one_box=True, num_images=24)
    output = tmp_path / "metrics" / "benchmark.json"
    argv = ["--records", str(records.root), "--images-per-class", "0", "--epochs", "1"]
    argv += ["--image-size", "32", "--batch-size", "8", "--output", str(output)]
    report = main(argv)

    assert json.loads(output.read_text()) == json.loads(json.dumps(report))
    assert report["command"].startswith("python pipelines/benchmark_multiclass.py --records ")
    assert report["images"] == 24 and report["epochs"] == 1
    assert report["tf_threads"].startswith("tf intra=")
    assert len(report["loadavg_start"]) == len(report["loadavg_end"]) == 3
    for way in ("tutorial_way", "kdet_way"):
        result = report[way]
        assert 0 <= result["mean_iou"] <= 1 and 0 <= result["class_accuracy"] <= 1
        # Every figure is rounded to 0.1 s, so each may be off by 0.05.
        assert 0 < result["load_seconds"] + result["fit_seconds"] <= result["seconds"] + 0.15
    assert report["kdet_way"]["feature_seconds"] > 0
    tutorial, kdet = report["tutorial_way"]["seconds"], report["kdet_way"]["seconds"]
    low, high = (tutorial - 0.05) / (kdet + 0.05), (tutorial + 0.05) / max(kdet - 0.05, 1e-9)
    assert low - 0.05 <= report["speedup"] <= high + 0.05
