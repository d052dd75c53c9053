"""Pictures of detections: one drawing function for annotated images, videos and grids.

Every picture kdet makes (``kdet predict``'s images and videos, the ``predictions.png`` grid
of each detector family) draws boxes through :func:`draw_detections`, so a class has the
same colour everywhere: a fixed qualitative palette (matplotlib's ``tab20``, its ten strong
colours first) indexed by class id. Each box is a coloured line over a dark outline, so it
shows on light and dark images alike, with a ``name 0.87`` label box that is kept inside
the image (below the box's top edge when there is no room above it, shifted left at the
right edge). Detections below the score threshold are not drawn.

Example:
    >>> import numpy as np
    >>> image = np.zeros((120, 160, 3), np.uint8)
    >>> found = {"boxes": [[10, 10, 90, 90]], "scores": [0.87], "classes": [0]}
    >>> drawn = draw_detections(image, found, class_names=["raccoon"], score_threshold=0.5)
    >>> drawn.shape, drawn.dtype.name, bool((drawn != 0).any())
    ((120, 160, 3), 'uint8', True)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import cv2
import matplotlib
import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from kdet.datasets.records import RecordSet

# tab20 reordered: its ten strong colours (even entries), then their light partners.
_TAB20 = matplotlib.colormaps["tab20"].colors
PALETTE: tuple[tuple[int, int, int], ...] = tuple(
    tuple(int(round(255 * c)) for c in colour) for colour in (*_TAB20[0::2], *_TAB20[1::2])
)
OUTLINE = (20, 20, 20)
GROUND_TRUTH = (255, 255, 255)
FONT = cv2.FONT_HERSHEY_SIMPLEX


def class_colour(class_id: int) -> tuple[int, int, int]:
    """The RGB colour of ``class_id`` (the same in every picture).

    Example:
        >>> class_colour(0), class_colour(20) == class_colour(0)
        ((31, 119, 180), True)
    """
    return PALETTE[int(class_id) % len(PALETTE)]


def label_box(
    box: Sequence[float], text_size: tuple[int, int], image_size: tuple[int, int]
) -> tuple[int, int, int, int]:
    """Where a label of ``text_size`` (width, height) goes for ``box``, kept inside the image.

    Above the box's top-left corner when it fits; inside the box, below its top edge,
    when the box touches the image's top; shifted left when it would pass the right edge.

    Args:
        box: ``(x1, y1, x2, y2)`` pixels.
        text_size: ``(width, height)`` of the label box.
        image_size: ``(height, width)`` of the image.

    Returns:
        ``(x1, y1, x2, y2)`` integer corners of the label box.

    Example:
        >>> label_box((0, 0, 50, 50), (30, 12), (100, 100))  # top edge: inside the box
        (0, 0, 30, 12)
        >>> label_box((80, 40, 100, 60), (30, 12), (100, 100))  # right edge: moved left
        (70, 28, 100, 40)
    """
    height, width = image_size
    text_w, text_h = text_size
    x1, y1 = int(round(box[0])), int(round(box[1]))
    top = y1 - text_h if y1 - text_h >= 0 else y1
    top = min(max(top, 0), max(height - text_h, 0))
    left = min(max(x1, 0), max(width - text_w, 0))
    return left, top, left + text_w, top + text_h


def draw_detections(
    image: np.ndarray,
    detections: Mapping,
    *,
    class_names: Sequence[str] | None = None,
    score_threshold: float = 0.0,
    ground_truth: Mapping | None = None,
    line_width: int | None = None,
) -> np.ndarray:
    """An RGB copy of ``image`` with the detections (and optionally ground truth) drawn.

    Args:
        image: RGB ``uint8 (H, W, 3)``.
        detections: ``{"boxes" (N, 4) xyxy pixels, "scores" (N,), "classes" (N,)}``;
            its ``"class_names"`` (one per box, as :class:`kdet.predict.Detector` returns)
            are used when ``class_names`` is not given.
        class_names: names indexed by class id; default: the detections' own names, or
            the class id.
        score_threshold: detections scoring below it are not drawn.
        ground_truth: ``{"boxes" (M, 4) xyxy}`` drawn as thin white boxes, unlabelled.
        line_width: box line width in pixels; default: 1 per 300 pixels of the longer
            side (at least 1).

    Returns:
        The drawn RGB ``uint8`` image (``image`` itself is left unchanged).

    Raises:
        ValueError: for an ``image`` that is not ``(H, W, 3)``.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"image must be RGB (H, W, 3). Received: image.shape={image.shape}")
    canvas = np.ascontiguousarray(image, dtype=np.uint8).copy()
    height, width = canvas.shape[:2]
    thickness = line_width or max(1, round(max(height, width) / 300))
    if ground_truth is not None:
        for box in np.asarray(ground_truth["boxes"], dtype=float).reshape(-1, 4):
            _rectangle(canvas, box, GROUND_TRUTH, 1)
    scores = np.asarray(detections["scores"], dtype=float).reshape(-1)
    boxes = np.asarray(detections["boxes"], dtype=float).reshape(-1, 4)
    classes = np.asarray(detections["classes"]).astype(int).reshape(-1)
    own_names = detections.get("class_names")
    for index in np.argsort(scores, kind="stable"):  # best drawn last, on top
        if scores[index] < score_threshold:
            continue
        class_id = int(classes[index])
        if class_names is not None:
            name = class_names[class_id]
        elif own_names is not None:
            name = own_names[index]
        else:
            name = str(class_id)
        colour = class_colour(class_id)
        _rectangle(canvas, boxes[index], colour, thickness)
        _label(canvas, boxes[index], f"{name} {scores[index]:.2f}", colour, thickness)
    return canvas


def _rectangle(canvas, box, colour, thickness):
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    cv2.rectangle(canvas, (x1, y1), (x2, y2), OUTLINE, thickness + 2)
    cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, thickness)


def _label(canvas, box, text, colour, thickness):
    scale = 0.4 * thickness
    font_weight = max(1, thickness // 2)
    (text_w, text_h), baseline = cv2.getTextSize(text, FONT, scale, font_weight)
    pad = thickness
    size = (text_w + 2 * pad, text_h + baseline + 2 * pad)
    x1, y1, x2, y2 = label_box(box, size, canvas.shape[:2])
    cv2.rectangle(canvas, (x1, y1), (x2 - 1, y2 - 1), colour, -1)
    luminance = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]
    ink = (0, 0, 0) if luminance > 140 else (255, 255, 255)
    origin = (x1 + pad, y1 + pad + text_h)
    cv2.putText(canvas, text, origin, FONT, scale, ink, font_weight, cv2.LINE_AA)


def prediction_grid(
    record_set: RecordSet,
    predictions: Sequence[Mapping],
    *,
    score_threshold: float = 0.3,
    max_images: int = 9,
    columns: int = 3,
    display_side: int = 480,
) -> Figure:
    """The first ``max_images`` records with ground truth (white) and detections drawn.

    Each image is resized so its longer side is ``display_side`` pixels before drawing,
    so labels read the same on small and large images.

    Args:
        record_set: the images and their ground truth (e.g. ``records.split("test")``).
        predictions: one ``{"boxes" xyxy pixels, "scores", "classes"}`` per record, in
            record order.
        score_threshold: detections below it are not drawn.
        max_images: most images in the grid.
        columns: images per row.
        display_side: longer side of each drawn image, in pixels.

    Returns:
        A matplotlib ``Figure``.

    Example:
        >>> figure = prediction_grid(records.split("test"), predictions)  # doctest: +SKIP
        >>> figure.savefig("predictions.png")  # doctest: +SKIP
    """
    count = min(max_images, len(record_set))
    rows = max(1, math.ceil(count / columns))
    figure = Figure(figsize=(3.2 * columns, 3.2 * rows))
    for index in range(count):
        record = record_set.records[index]
        with Image.open(record_set.image_path(record)) as file:
            image = file.convert("RGB")
        scale = display_side / max(image.size)
        image = image.resize((round(image.width * scale), round(image.height * scale)))
        found = predictions[index]
        drawn = draw_detections(
            np.asarray(image),
            {**found, "boxes": np.asarray(found["boxes"], dtype=float).reshape(-1, 4) * scale},
            class_names=record_set.class_names,
            score_threshold=score_threshold,
            ground_truth={"boxes": record.boxes_array() * scale},
        )
        axes = figure.add_subplot(rows, columns, index + 1)
        axes.imshow(drawn)
        axes.set_axis_off()
    figure.suptitle(f"detections (score >= {score_threshold:.2f}) and ground truth (white)")
    figure.tight_layout()
    return figure
