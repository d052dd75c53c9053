"""Random boxes shared by the bounding_box tests."""

import numpy as np

HEIGHT, WIDTH = 48, 64
IMAGE_SHAPE = (HEIGHT, WIDTH, 3)  # keras_cv wants (height, width, channels)


def random_xyxy(rng, shape, spill=0.0):
    """Valid pixel `xyxy` boxes `(*shape, 4)`; `spill` lets corners leave the image."""
    low_x, high_x = -spill * WIDTH, (1 + spill) * WIDTH
    low_y, high_y = -spill * HEIGHT, (1 + spill) * HEIGHT
    x = np.sort(rng.uniform(low_x, high_x, (*shape, 2)), axis=-1)
    y = np.sort(rng.uniform(low_y, high_y, (*shape, 2)), axis=-1)
    x[..., 1] += 0.5  # no zero-width boxes
    y[..., 1] += 0.5
    return np.stack([x[..., 0], y[..., 0], x[..., 1], y[..., 1]], axis=-1).astype("float32")


def pad_rows(rng, boxes, fraction=0.3):
    """Copy of `boxes` with about `fraction` of the rows set to -1, and the row mask."""
    padded = rng.uniform(size=boxes.shape[:-1]) < fraction
    boxes = boxes.copy()
    boxes[padded] = -1.0
    return boxes, padded
