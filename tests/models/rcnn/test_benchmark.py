import numpy as np

from kdet.models.rcnn.benchmark import run_benchmark, tutorial_detect
from kdet.models.rcnn.labelling import iou_matrix
from tests.models.rcnn.conftest import square_image
from tests.models.test_sliding_window import brightness_classifier


def test_tutorial_way_finds_the_square():
    out = tutorial_detect(brightness_classifier(16), square_image(), score_threshold=0.9)
    assert (
        iou_matrix(out["boxes"][:1], np.array([[16, 20, 44, 52]], np.float32)) > 0.7
    )  # a box inside the square ties with it


def test_benchmark_reports_both_ways_and_picks_a_setting(square_records):
    results = run_benchmark(
        brightness_classifier(16),
        square_records,
        kdet_settings=[{"mode": "fast", "max_side": 32}, {"mode": "fast", "max_side": None}],
        score_threshold=0.9,
    )
    assert set(results["tutorial"]) == {"latency_ms", "mAP50", "mAP"}
    assert len(results["kdet"]) == 2 and results["tutorial"]["mAP50"] > 0.5
    if results["best"] is not None:
        assert results["best"]["mAP50"] >= results["tutorial"]["mAP50"]
        assert (
            results["speedup"] == results["tutorial"]["latency_ms"] / results["best"]["latency_ms"]
        )
