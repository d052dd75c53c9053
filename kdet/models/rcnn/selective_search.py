"""OpenCV selective search for one image: the region proposals of R-CNN and Fast R-CNN.

Stand-alone (NumPy and OpenCV contrib only, no kdet import), so that an exported R-CNN
model's runtime can ship this file and compute the proposals its graph takes as input:
:class:`kdet.deploy.Runtime` and the MLflow pyfunc model (:mod:`kdet.pyfunc_model`) run it
with the settings the artifact's metadata carries. Training and evaluation reach it through
:mod:`kdet.models.rcnn.proposals`.

Example:
    >>> import numpy as np
    >>> image = np.zeros((60, 80, 3), np.uint8)
    >>> image[10:40, 20:50] = 255
    >>> boxes = selective_search(image, mode="fast", max_side=40)
    >>> boxes.shape[1], bool((boxes[:, 2] <= 80).all())
    (4, True)
"""

from __future__ import annotations

import ctypes

import cv2
import numpy as np

MODES = ("fast", "quality", "single")
#: the settings a served R-CNN model searches with unless told otherwise (the pipeline's)
DEFAULT_PROPOSALS = {"mode": "fast", "max_side": 300}


def selective_search(
    image: np.ndarray,
    *,
    mode: str = "fast",
    max_side: int | None = None,
    max_proposals: int | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Selective-search proposals for one image.

    Args:
        image: ``uint8 (H, W, 3)`` image, BGR as ``cv2.imread`` returns it (OpenCV's
            colour-space strategies assume BGR).
        mode: ``"fast"``, ``"quality"`` (OpenCV's two strategies) or ``"single"`` (one
            graph segmentation, the cheapest).
        max_side: search on a copy shrunk so its longest side is at most this many
            pixels, then scale the boxes back; ``None`` searches at full size.
        max_proposals: keep only the first proposals in OpenCV's order; ``None`` keeps all.
        seed: seeds the random ranking of the proposals, so the same image gives the
            same proposals in any process.

    Returns:
        float32 ``(N, 4)`` boxes, absolute-pixel ``xyxy`` in ``image``'s pixels, in
        OpenCV's order (larger, more object-like regions come first on average).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}. Received: mode={mode!r}")
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(
            f"image must be uint8 (H, W, 3). Received: shape={image.shape}, dtype={image.dtype}"
        )
    height, width = image.shape[:2]
    factor = 1.0
    if max_side is not None and max(height, width) > max_side:
        factor = max_side / max(height, width)
        size = (max(1, round(width * factor)), max(1, round(height * factor)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    search = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
    search.setBaseImage(image)
    {
        "fast": search.switchToSelectiveSearchFast,
        "quality": search.switchToSelectiveSearchQuality,
        "single": search.switchToSingleStrategy,
    }[mode]()
    _seed_c_rand(seed)
    rects = np.asarray(search.process(), np.float32).reshape(-1, 4)
    if max_proposals is not None:
        rects = rects[:max_proposals]
    boxes = np.concatenate([rects[:, :2], rects[:, :2] + rects[:, 2:]], axis=1) / factor
    return np.minimum(boxes, [width, height, width, height]).astype(np.float32)


def _seed_c_rand(seed: int) -> None:
    """Seed C's ``rand()``: OpenCV's selective search ranks regions with ``std::rand``
    (``cv2.setRNGSeed`` does not reach it), so without this the order of the
    proposals depends on what the process did before."""
    ctypes.CDLL(None).srand(ctypes.c_uint(seed))
