import numpy as np
import pytest
from PIL import Image

from kdet.datasets.records import Record, RecordSet


def square_image(size=64, box=(16, 20, 44, 52), value=255):
    """A dark image with one bright rectangle at ``box`` (xyxy)."""
    image = np.full((size, size, 3), 20, np.uint8)
    x1, y1, x2, y2 = box
    image[y1:y2, x1:x2] = value
    return image


@pytest.fixture
def square_records(tmp_path):
    """Four 64x64 images with one bright square each, saved as JPEG/PNG files."""
    records = []
    for i, box in enumerate([(16, 20, 44, 52), (4, 4, 30, 34), (30, 10, 60, 40), (8, 30, 40, 60)]):
        name = f"img{i}.png"
        Image.fromarray(square_image(box=box)).save(tmp_path / name)
        records.append(Record(name, 64, 64, [list(map(float, box))], [0], "train"))
    return RecordSet("squares", ["square"], records, tmp_path)
