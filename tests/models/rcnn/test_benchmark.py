import numpy as np
import pytest

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
    classifier = brightness_classifier(16)
    results = run_benchmark(
        classifier,
        square_records,
        kdet_settings=[{"mode": "fast", "max_side": 32}, {"mode": "fast", "max_side": None}],
        score_threshold=0.9,
        others={"windows": lambda image: tutorial_detect(classifier, image, max_proposals=5)},
    )
    assert set(results["tutorial"]) == {"latency_ms", "mAP50", "mAP"}
    assert len(results["kdet"]) == 2 and results["tutorial"]["mAP50"] > 0.5
    assert set(results["others"]["windows"]) == {"latency_ms", "mAP50", "mAP"}
    if results["best"] is not None:
        assert results["best"]["mAP50"] >= results["tutorial"]["mAP50"]
        assert (
            results["speedup"] == results["tutorial"]["latency_ms"] / results["best"]["latency_ms"]
        )


def test_other_detectors_need_their_own_names(square_records):
    with pytest.raises(ValueError, match="tutorial"):
        run_benchmark(
            brightness_classifier(16),
            square_records,
            kdet_settings=[],
            others={"tutorial": lambda image: None},
        )
