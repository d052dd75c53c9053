import csv
import json

import numpy as np
import pytest
from matplotlib.figure import Figure

from kdet.metrics import evaluate_detections, plot_pr_curves, write_pr_curves


@pytest.fixture
def result():
    ground_truth = [
        {"boxes": [[0, 0, 10, 10], [20, 20, 30, 30]], "classes": [0, 0]},
        {"boxes": [[5, 5, 25, 25]], "classes": [1]},
    ]
    detections = [
        {"boxes": [[0, 0, 10, 10], [40, 40, 50, 50]], "scores": [0.9, 0.8], "classes": [0, 0]},
        {"boxes": [[5, 5, 25, 25]], "scores": [0.6], "classes": [2]},
    ]
    return evaluate_detections(ground_truth, detections, ["cat", "dog", "owl"])


def test_pr_curve_points(result):
    curves = result.pr_curves
    assert list(curves) == ["cat", "dog"]  # owl has no ground truth
    recall, precision = curves["cat"]
    assert len(recall) == 101 and recall[0] == 0.0 and recall[-1] == 1.0
    # cat: TP then FP, one of two objects found -> precision 1 up to recall 0.5, then 0.
    np.testing.assert_allclose(precision[:51], 1.0, atol=1e-12)
    np.testing.assert_array_equal(precision[51:], 0.0)
    np.testing.assert_array_equal(curves["dog"][1], 0.0)
    with pytest.raises(KeyError, match="no ground truth"):
        result.pr_curve("owl")


def test_write_csv_and_json_for_dvc_plots(result, tmp_path):
    path = write_pr_curves(result, tmp_path / "plots" / "pr.csv")
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["recall", "precision", "class"]
    assert len(rows) == 2 * 101 and {row["class"] for row in rows} == {"cat", "dog"}
    assert float(rows[50]["precision"]) == pytest.approx(1.0)
    rows_json = json.loads(write_pr_curves(result, tmp_path / "pr.json").read_text())
    assert rows_json[50] == {"recall": 0.5, "precision": pytest.approx(1.0), "class": "cat"}
    with pytest.raises(ValueError, match=".csv or .json"):
        write_pr_curves(result, tmp_path / "pr.txt")


def test_plot_has_one_line_per_class(result):
    figure = plot_pr_curves(result)
    assert isinstance(figure, Figure)
    axes = figure.axes[0]
    assert [line.get_label() for line in axes.lines] == ["cat (AP0.5=0.505)", "dog (AP0.5=0.000)"]
    assert len(plot_pr_curves(result, ["dog"]).axes[0].lines) == 1


def test_as_metrics_is_flat_and_valid_json(result):
    metrics = result.as_metrics()
    assert metrics["mAP50"] == pytest.approx((51 / 101 + 0) / 2, abs=1e-12)
    assert set(metrics) == {"mAP50", "mAP", "AP50/cat", "AP50/dog", "AP/cat", "AP/dog"}
    json.dumps(metrics, allow_nan=False)
