"""The YOLOv8 training-step profile (pipelines/profile_yolov8.py) on a tiny shapes set."""

import pytest

from pipelines.profile_yolov8 import profile
from tests.runner_helpers import make_shapes


@pytest.mark.slow  # builds four YOLOv8 models and XLA-compiles a train step (about a minute)
def test_the_yolov8_profile_times_every_part_and_every_way(tmp_path):
    records = make_shapes(tmp_path, num_images=8).split("train")
    result = profile(records, image_size=64, batch_size=2, rounds=1)

    ways = result["median_ms_per_batch"]
    assert set(ways) == {
        "matmul 2048",
        "forward",
        "forward + loss",
        "forward + loss + backward",
        "step",
        "step, XLA",
        "step, XLA on loss and optimizer",
        "forward + backward, float32 (stand-in loss)",
        "forward + backward, mixed_bfloat16 (stand-in loss)",
    }
    assert all(ms > 0 for ms in ways.values())
    assert result["forward_gflops_per_image"] > 0
    assert result["input_pipeline_images_per_s"] > 0
    assert sum(result["share_of_step"].values()) == pytest.approx(1.0)
    assert set(result["speed_up_over_step"]) == {
        "XLA",
        "XLA on loss and optimizer",
        "bf16 forward + backward",
    }
