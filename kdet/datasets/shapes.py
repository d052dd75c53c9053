"""Synthetic shapes: a seeded generator of images with exact boxes, no download.

Each image has a random noisy background and 1 to ``max_objects`` filled rectangles,
ellipses and triangles (class ids 0, 1, 2) of random colours far from the background.
Shapes never overlap, so every box is the exact tight box of the shape's drawn pixels
(measured on its mask, not computed from the geometry). The same ``seed`` gives
identical PNG files and records; image ``i`` does not depend on ``num_images``.

Folder layout of ``out_dir``::

    images/shape-NNNNN.png
    records.json

Example:
    >>> from kdet.datasets import shapes
    >>> shapes.fetch("data/shapes", num_images=10, image_size=64).summary()["images"]
    10
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from kdet.datasets.records import Record, RecordSet, assign_splits

CLASS_NAMES = ("rectangle", "ellipse", "triangle")
_MIN_SIDE = 8
_PLACEMENT_TRIES = 50
_MIN_COLOUR_DISTANCE = 120.0
_NOISE_STD = 12.0


def _size_pair(image_size) -> tuple[int, int]:
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    if min(height, width) < 2 * _MIN_SIDE:
        raise ValueError(
            f"image_size must be at least {2 * _MIN_SIDE} pixels. Received: {image_size}"
        )
    return int(height), int(width)


def _overlaps(box, boxes) -> bool:
    # One pixel of gap, so two shapes never touch and each mask box stays exact.
    return any(
        box[0] <= b[2] and b[0] <= box[2] and box[1] <= b[3] and b[1] <= box[3] for b in boxes
    )


def _shape_mask(class_id: int, frame, rng, size) -> Image.Image:
    width, height = size
    mask = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(mask)
    x1, y1, x2, y2 = frame
    if class_id == 0:
        draw.rectangle([x1, y1, x2 - 1, y2 - 1], fill=255)
    elif class_id == 1:
        draw.ellipse([x1, y1, x2 - 1, y2 - 1], fill=255)
    else:
        apex = int(rng.integers(x1, x2))
        draw.polygon([(apex, y1), (x2 - 1, y2 - 1), (x1, y2 - 1)], fill=255)
    return mask


def _colour_far_from(background, rng) -> np.ndarray:
    while True:
        colour = rng.integers(0, 256, size=3)
        if np.linalg.norm(colour - background) >= _MIN_COLOUR_DISTANCE:
            return colour


def draw_image(index: int, *, image_size=128, max_objects: int = 4, seed: int = 0):
    """Draw image ``index`` of the ``seed`` series.

    Returns:
        ``(pixels, boxes, classes)``: uint8 ``(H, W, 3)`` array, absolute ``xyxy`` boxes
        (exclusive right/bottom edge, i.e. a box covers pixels ``x1 <= x < x2``) and
        class ids.

    Example:
        >>> pixels, boxes, classes = draw_image(0, image_size=64, max_objects=2)
        >>> pixels.shape, len(boxes) == len(classes)
        ((64, 64, 3), True)
    """
    height, width = _size_pair(image_size)
    rng = np.random.default_rng([seed, index])
    background = rng.integers(0, 256, size=3)
    noise = rng.normal(0.0, _NOISE_STD, size=(height, width, 3))
    pixels = np.clip(background + noise, 0, 255)
    boxes, classes = [], []
    max_side = max(_MIN_SIDE + 1, min(height, width) // 2)
    for _ in range(int(rng.integers(1, max_objects + 1))):
        for _ in range(_PLACEMENT_TRIES):
            w = int(rng.integers(_MIN_SIDE, max_side + 1))
            h = int(rng.integers(_MIN_SIDE, max_side + 1))
            x1 = int(rng.integers(0, width - w + 1))
            y1 = int(rng.integers(0, height - h + 1))
            if not _overlaps((x1, y1, x1 + w, y1 + h), boxes):
                break
        else:
            continue
        class_id = int(rng.integers(len(CLASS_NAMES)))
        mask = _shape_mask(class_id, (x1, y1, x1 + w, y1 + h), rng, (width, height))
        inside = np.asarray(mask) > 0
        pixels[inside] = _colour_far_from(background, rng)
        boxes.append(list(mask.getbbox()))
        classes.append(class_id)
    return np.round(pixels).astype(np.uint8), boxes, classes


def fetch(
    out_dir: str | os.PathLike,
    *,
    num_images: int = 200,
    image_size=128,
    max_objects: int = 4,
    seed: int = 0,
    fractions: dict[str, float] | None = None,
) -> RecordSet:
    """Generate the shapes dataset into ``out_dir`` and write ``records.json``.

    Args:
        out_dir: dataset folder.
        num_images: number of images.
        image_size: ``int`` for square images or ``(height, width)``.
        max_objects: at most this many shapes per image (at least one).
        seed: seed of the drawing and of the split.
        fractions: split fractions, default ``{"train": 0.8, "test": 0.2}``.

    Returns:
        The saved :class:`RecordSet`.

    Example:
        >>> fetch("data/shapes", num_images=4, image_size=64, seed=1).class_names
        ['rectangle', 'ellipse', 'triangle']
    """
    if num_images < 1 or max_objects < 1:
        raise ValueError(
            f"num_images and max_objects must be >= 1. Received: num_images={num_images}, "
            f"max_objects={max_objects}"
        )
    height, width = _size_pair(image_size)
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    records = []
    for index in range(num_images):
        pixels, boxes, classes = draw_image(
            index, image_size=(height, width), max_objects=max_objects, seed=seed
        )
        relative = f"images/shape-{index:05d}.png"
        target = out_dir / relative
        part = target.with_name(target.name + ".part")
        Image.fromarray(pixels).save(part, format="PNG")
        os.replace(part, target)
        boxes = [[float(v) for v in box] for box in boxes]
        records.append(Record(relative, width, height, boxes, classes))
    fractions = fractions if fractions is not None else {"train": 0.8, "test": 0.2}
    records = assign_splits(records, fractions, seed)
    record_set = RecordSet("shapes", list(CLASS_NAMES), records, out_dir)
    record_set.save(out_dir)
    return record_set
