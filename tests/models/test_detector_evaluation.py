"""What every detector family's ``evaluate`` returns: metrics at the operating threshold,
the detection confusion matrix (figure and DVC table) and a prediction grid."""

import numpy as np
import pytest
from PIL import Image

from kdet.datasets.records import Record, RecordSet
from kdet.families import get_family
from kdet.metrics import evaluate_detections
from kdet.models.detector_evaluation import detector_evaluation
from tests.models.rcnn.conftest import square_image
from tests.models.test_sliding_window import brightness_classifier

BOXES = [(16, 20, 44, 52), (4, 4, 30, 34), (30, 10, 60, 40)]
FIGURES = {"pr_curves.png", "predictions.png", "detection_confusion.png"}


@pytest.fixture
def squares(tmp_path):
    """Three 64x64 test images with one bright square (class ``square``) each."""
    records = []
    for i, box in enumerate(BOXES):
        Image.fromarray(square_image(box=box)).save(tmp_path / f"{i}.png")
        records.append(Record(f"{i}.png", 64, 64, [list(map(float, box))], [0], "test"))
    return RecordSet("squares", ["square", "circle"], records, tmp_path)


def test_operating_threshold_filters_the_low_threshold_predictions(squares):
    # Image 0: found at 0.9; image 1: found only at 0.2 (below 0.5: a miss);
    # image 2: found at 0.8 plus a stray "circle" at 0.7 (background).
    predictions = [
        {"boxes": [BOXES[0]], "scores": [0.9], "classes": [0]},
        {"boxes": [BOXES[1]], "scores": [0.2], "classes": [0]},
        {"boxes": [BOXES[2], (0, 50, 10, 60)], "scores": [0.8, 0.7], "classes": [0, 1]},
    ]
    truth = [{"boxes": r.boxes_array(), "classes": r.classes_array()} for r in squares.records]
    result = evaluate_detections(truth, predictions, squares.class_names)
    evaluation = detector_evaluation(squares, predictions, result, operating_threshold=0.5)
    metrics = evaluation.metrics
    assert metrics["operating_threshold"] == 0.5 and metrics["test_images"] == 3
    assert metrics["per_class"] == {
        "square": {"precision": 1.0, "recall": pytest.approx(2 / 3), "ap50": result.ap50["square"]}
    }
    assert set(evaluation.figures) == FIGURES
    rows = evaluation.tables["confusion.csv"]
    pairs = sorted((r["actual"], r["predicted"]) for r in rows)
    assert pairs == [("background", "circle"), ("square", "missed"), *[("square", "square")] * 2]
    assert evaluation.pr_result is result


def test_sliding_window_family_evaluates_at_its_score_threshold(squares, tmp_path):
    train_dir = tmp_path / "train"
    train_dir.mkdir()
    brightness_classifier(16).save(train_dir / "model.keras")
    family = get_family("sliding_window")
    options = {
        **family.defaults["evaluate"],
        "window_size": [32, 32],
        "step": 8,
        "image_side": 64,
        "score_threshold": 0.5,
        "windows_on_validation": False,  # no held-out images here: fixed windows and
        "threshold_on_validation": False,  # the served threshold is score_threshold
    }
    one_class = RecordSet("squares", ["square"], squares.records, squares.root)
    evaluation = family.evaluate(
        one_class, train_dir=train_dir, saved_model=tmp_path / "saved_model", **options
    )
    assert evaluation.metrics["operating_threshold"] == 0.5
    assert set(evaluation.metrics["per_class"]["square"]) == {"precision", "recall", "ap50"}
    assert set(evaluation.figures) == FIGURES
    rows = evaluation.tables["confusion.csv"]
    assert rows and {r["actual"] for r in rows} <= {"square", "background"}
    assert np.isfinite(evaluation.metrics["mAP50"])
