import numpy as np
import pytest

from kdet.latency import measure_latency
from tests.toy_detector import export_toy_detector


def test_median_and_p90_of_the_detect_image_calls(tmp_path):
    saved_model = export_toy_detector(tmp_path / "toy")
    images = [np.zeros((48, 64, 3), np.uint8), np.full((80, 40, 3), 200, np.uint8)]
    latency = measure_latency(saved_model, images, warmup=1, repeats=5)
    assert set(latency) == {"latency_ms", "latency_p90_ms"}
    assert 0 < latency["latency_ms"] <= latency["latency_p90_ms"]
    one_image = measure_latency(saved_model, images[0], warmup=0, repeats=1)
    assert one_image["latency_ms"] == one_image["latency_p90_ms"] > 0


@pytest.mark.parametrize("images, repeats", [([], 5), ([np.zeros((8, 8, 3), np.uint8)], 0)])
def test_nothing_to_time_is_an_error(tmp_path, images, repeats):
    with pytest.raises(ValueError, match="at least one image and one timed call"):
        measure_latency(tmp_path / "never_loaded", images, repeats=repeats)
