import numpy as np
import pytest
from PIL import Image

from kdet.datasets.records import Record, RecordSet

CLASS_NAMES = ["red_square", "green_bar"]


def draw_records(folder, count, *, size=(64, 64), seed=0, split="train"):
    """Tiny images with one red square (class 0) and one green bar (class 1) each."""
    rng = np.random.default_rng(seed)
    height, width = size
    (folder / "images").mkdir(parents=True, exist_ok=True)
    records = []
    for index in range(count):
        pixels = np.full((height, width, 3), 40, np.uint8)
        side = int(rng.integers(12, 20))
        x1, y1 = int(rng.integers(0, width // 2 - side)), int(rng.integers(0, height - side))
        pixels[y1 : y1 + side, x1 : x1 + side] = (230, 30, 30)
        bar_w, bar_h = int(rng.integers(6, 10)), int(rng.integers(20, height - 8))
        bx = int(rng.integers(width // 2, width - bar_w))
        by = int(rng.integers(0, height - bar_h))
        pixels[by : by + bar_h, bx : bx + bar_w] = (30, 230, 30)
        name = f"images/{split}-{index}.png"
        Image.fromarray(pixels).save(folder / name)
        boxes = [[x1, y1, x1 + side, y1 + side], [bx, by, bx + bar_w, by + bar_h]]
        records.append(Record(name, width, height, boxes, [0, 1], split))
    return RecordSet("tiny", list(CLASS_NAMES), records, folder)


@pytest.fixture(scope="session")
def tiny_records(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    train = draw_records(folder, 16, seed=0, split="train")
    test = draw_records(folder, 4, size=(48, 80), seed=1, split="test")
    return RecordSet("tiny", list(CLASS_NAMES), train.records + test.records, folder)
