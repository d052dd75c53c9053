"""The proof that boxes, formats, label encoding and decoding are right: from scratch on
synthetic shapes, held-out mAP@0.5 >= 0.9 (about 11 minutes on a 2-core CPU)."""

import pytest

from kdet.models.yolov8.evaluate import evaluate_yolov8
from kdet.models.yolov8.train import train_yolov8


@pytest.mark.slow
@pytest.mark.timeout(3600)  # a hang bound, not a speed test: ~11 min on 2 idle cores
def test_shapes_reach_map50_of_0_9(tmp_path):
    from kdet.datasets import fetch

    records = fetch("shapes", tmp_path, num_images=600, image_size=128, max_objects=4, seed=0)
    model, history = train_yolov8(
        records.split("train"), None, image_size=128, batch_size=16, epochs=40, seed=0
    )
    result, _ = evaluate_yolov8(model, records.split("test"), image_size=128)
    assert result.mAP50 >= 0.9, (result.as_metrics(), history["loss"])
