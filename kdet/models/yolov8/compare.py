"""Train two or more YOLOv8 recipes side by side on the same data and compare mAP.

Every recipe gets the same training and test records, epochs, input size, batch size,
backbone and seed; only the recipe differs. Both models are evaluated with the same
decoder thresholds (confidence 0.001, so the PR curve is complete), so the comparison is
about training, not about where a decoder cuts.

Example:
    >>> results = compare_recipes(train, test, image_size=256, epochs=10)  # doctest: +SKIP
    >>> results["kdet"]["mAP50"], results["keras_io"]["mAP50"]            # doctest: +SKIP
"""

from __future__ import annotations

import time

from kdet.datasets.records import RecordSet
from kdet.models.yolov8.evaluate import evaluate_yolov8
from kdet.models.yolov8.train import train_yolov8


def compare_recipes(
    train_records: RecordSet,
    test_records: RecordSet,
    *,
    recipes=("keras_io", "kdet"),
    image_size=256,
    batch_size: int = 8,
    epochs: int = 10,
    backbone_size: str = "xs",
    seed: int = 0,
    precision: str = "auto",
    decoder: dict | None = None,
) -> dict[str, dict[str, float]]:
    """Train each recipe once with identical settings; returns its metrics by recipe name
    (``mAP50``, ``mAP``, per-class AP, ``final_loss``, ``train_seconds``)."""
    decoder = decoder or {"confidence_threshold": 0.001, "iou_threshold": 0.6}
    results = {}
    for recipe in recipes:
        start = time.perf_counter()
        model, history = train_yolov8(
            train_records,
            None,
            recipe=recipe,
            image_size=image_size,
            batch_size=batch_size,
            epochs=epochs,
            backbone_size=backbone_size,
            seed=seed,
            precision=precision,
        )
        seconds = time.perf_counter() - start
        result, _ = evaluate_yolov8(
            model, test_records, image_size=image_size, batch_size=batch_size, **decoder
        )
        results[recipe] = {
            **result.as_metrics(),
            "final_loss": history["loss"][-1],
            "train_seconds": seconds,
        }
    return results
