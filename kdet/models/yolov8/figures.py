"""Figures for YOLOv8 runs: a grid of test images with predicted and true boxes.

Example:
    >>> figure = prediction_grid(records.split("test"), predictions)  # doctest: +SKIP
    >>> figure.savefig("predictions.png")                              # doctest: +SKIP
"""

from __future__ import annotations

import math

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from PIL import Image

from kdet.datasets.records import RecordSet


def prediction_grid(
    record_set: RecordSet,
    predictions: list[dict],
    *,
    max_images: int = 9,
    score_threshold: float = 0.3,
    columns: int = 3,
) -> Figure:
    """Ground truth (dashed white) and detections above ``score_threshold`` (coloured,
    labelled ``class score``) on the first ``max_images`` records."""
    count = min(max_images, len(record_set))
    rows = max(1, math.ceil(count / columns))
    figure = Figure(figsize=(3.2 * columns, 3.2 * rows))
    colours = ["tab:red", "tab:blue", "tab:green", "tab:orange", "tab:purple", "tab:cyan"]
    for index in range(count):
        record = record_set.records[index]
        axes = figure.add_subplot(rows, columns, index + 1)
        with Image.open(record_set.image_path(record)) as image:
            axes.imshow(np.asarray(image.convert("RGB")))
        for x1, y1, x2, y2 in record.boxes:
            axes.add_patch(
                Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, ec="white", ls="--", lw=1)
            )
        found = predictions[index]
        for box, score, cls in zip(found["boxes"], found["scores"], found["classes"], strict=True):
            if score < score_threshold:
                continue
            x1, y1, x2, y2 = box
            colour = colours[int(cls) % len(colours)]
            axes.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, ec=colour, lw=1.5))
            axes.text(
                x1,
                y1,
                f"{record_set.class_names[int(cls)]} {score:.2f}",
                color="white",
                fontsize=7,
                va="bottom",
                bbox={"facecolor": colour, "pad": 1, "lw": 0},
            )
        axes.set_axis_off()
    figure.suptitle(f"predictions (score >= {score_threshold}) and ground truth (dashed)")
    figure.tight_layout()
    return figure
