"""Tiny record sets with images in the awkward modes a fetched dataset may contain."""

import numpy as np
import pytest
from PIL import Image

from kdet.datasets.records import Record, RecordSet

# name, PIL mode, format, (width, height)
IMAGES = [
    ("rgb.jpg", "RGB", "JPEG", (64, 64)),
    ("gray.jpg", "L", "JPEG", (64, 48)),
    ("alpha.png", "RGBA", "PNG", (48, 64)),
    ("cmyk.jpg", "CMYK", "JPEG", (64, 32)),
]


def write_image(path, mode, fmt, size, seed=0):
    """A smooth colour gradient (JPEG-friendly) in ``mode``, saved as ``fmt``."""
    width, height = size
    x = np.linspace(0, 255, width)[None, :]
    y = np.linspace(0, 255, height)[:, None]
    rgb = np.stack([x + 0 * y, y + 0 * x, np.full((height, width), 40.0 + seed)], axis=-1)
    image = Image.fromarray(rgb.astype(np.uint8), "RGB")
    if mode == "RGBA":
        image.putalpha(128)
    else:
        image = image.convert(mode)
    image.save(path, fmt)


@pytest.fixture
def record_set(tmp_path):
    """Four images (RGB/gray/CMYK JPEG, RGBA PNG), 1-3 boxes each, train/test splits."""
    records = []
    for i, (name, mode, fmt, (width, height)) in enumerate(IMAGES):
        write_image(tmp_path / name, mode, fmt, (width, height), seed=i)
        boxes = [[2.0, 4.0, width / 2, height / 2], [width / 4, height / 4, width, height]][
            : 1 + i % 2
        ]
        if i == 3:
            boxes.append([0.0, 0.0, 8.0, 8.0])
        records.append(
            Record(name, width, height, boxes, [j % 3 for j in range(len(boxes))], split="train")
        )
    records[1].split = "test"
    return RecordSet("toy", ["square", "circle", "triangle"], records, tmp_path)
