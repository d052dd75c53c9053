import numpy as np
import pytest
from PIL import Image

from kdet.datasets.records import Record, RecordSet


def make_single_box_records(folder, count=24, size=(80, 64), seed=0) -> RecordSet:
    """Noisy ``size`` (width, height) JPEGs, each with one filled rectangle whose colour
    gives its class (0 red, 1 blue); images 4, 5, 10, 11, ... (a third) are in the test split."""
    rng = np.random.default_rng(seed)
    width, height = size
    records = []
    for i in range(count):
        class_id = i % 2
        image = rng.integers(0, 60, (height, width, 3), dtype=np.uint8)
        x1, y1 = rng.integers(2, width // 3), rng.integers(2, height // 3)
        x2, y2 = (
            rng.integers(x1 + width // 3, width - 1),
            rng.integers(y1 + height // 3, height - 1),
        )
        image[y1:y2, x1:x2, 2 * class_id] = 230
        name = f"img_{i:03d}.jpg"
        Image.fromarray(image).save(folder / name, quality=95)
        split = "test" if i % 6 >= 4 else "train"
        records.append(
            Record(
                name,
                width,
                height,
                [[float(x1), float(y1), float(x2), float(y2)]],
                [class_id],
                split,
            )
        )
    record_set = RecordSet("toy", ["red", "blue"], records, folder)
    record_set.save()
    return record_set


@pytest.fixture(scope="package")
def toy_records(tmp_path_factory):
    return make_single_box_records(tmp_path_factory.mktemp("toy"))
