"""A contract SavedModel called on images, and its detections drawn on them.

:class:`Detector` loads a SavedModel with kdet's serving contract (:mod:`kdet.export`) with
plain TensorFlow and computes selective-search proposals for the models that take them;
:func:`annotate` draws detections as ``kdet predict`` writes them. The experiment runner
uses both for its showcase images, :mod:`kdet.predict` for files, videos and webcams.

Example:
    >>> detector = Detector("data/models/yolov8_raccoon/saved_model")  # doctest: +SKIP
    >>> cv2.imwrite("out.jpg", annotate(image, detector(image)))  # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import tensorflow as tf

from kdet.errors import KdetError
from kdet.visualize import draw_detections


def load_contract(folder: str | os.PathLike):
    """Load a SavedModel with kdet's serving contract: ``(loaded, detect_image signature)``.

    Raises :class:`~kdet.errors.KdetError` naming ``folder`` when it is no SavedModel or
    lacks the ``detect_image`` signature.

    Example:
        >>> loaded, detect = load_contract("saved_model")  # doctest: +SKIP
    """
    if not (Path(folder) / "saved_model.pb").exists():
        raise KdetError(folder, "not a SavedModel folder (no saved_model.pb)")
    loaded = tf.saved_model.load(str(folder))
    if "detect_image" not in loaded.signatures:
        raise KdetError(
            folder,
            "SavedModel lacks the 'detect_image' signature of kdet's serving contract "
            f"(has {sorted(loaded.signatures)})",
        )
    return loaded, loaded.signatures["detect_image"]


class Detector:
    """A contract SavedModel loaded with plain TensorFlow, called on RGB ``uint8`` arrays.

    Detectors exported with region proposals as a second input (R-CNN, Fast R-CNN: their
    signatures take ``proposals``) get selective-search proposals computed here with
    :func:`kdet.models.rcnn.proposals.selective_search`.

    Args:
        saved_model_dir: a folder written by :func:`kdet.export.export_detector` (or
            ``export_proposal_detector``).
        proposal_options: keyword arguments of ``selective_search`` for proposal-taking
            models (default ``{"mode": "fast", "max_side": 300}``, the pipeline's settings).

    Example:
        >>> detector = Detector("saved_model")  # doctest: +SKIP
        >>> detector(np.zeros((48, 64, 3), np.uint8), score_threshold=0.5)  # doctest: +SKIP
        {'boxes': array(...), 'scores': ..., 'classes': ..., 'class_names': [...]}
    """

    def __init__(self, saved_model_dir: str | os.PathLike, proposal_options: dict | None = None):
        self.path = str(saved_model_dir)
        self._model, detect = load_contract(self.path)
        self._start(detect, proposal_options)

    def _start(self, detect, proposal_options: dict | None = None) -> None:
        """Use the ``detect_image`` function ``detect``, warmed up."""
        self._detect = detect
        self.takes_proposals = "proposals" in self._detect.structured_input_signature[1]
        self.proposal_options = None
        if self.takes_proposals:
            from kdet.models.rcnn.selective_search import DEFAULT_PROPOSALS

            self.proposal_options = {**DEFAULT_PROPOSALS, **(proposal_options or {})}
        # One call on a small image, so that the graph's one-time start-up (seconds) is not
        # counted in the images/s of the first real input.
        warm_up = {"image": tf.zeros((64, 64, 3), tf.uint8)}
        if self.takes_proposals:
            warm_up["proposals"] = tf.constant([[0.0, 0.0, 64.0, 64.0]])
        self._detect(**warm_up)

    def __call__(self, image: np.ndarray, score_threshold: float = 0.0) -> dict:
        """Detections for one RGB ``uint8 (H, W, 3)`` image, scores >= ``score_threshold``."""
        inputs = {"image": tf.convert_to_tensor(image, tf.uint8)}
        if self.takes_proposals:
            from kdet.models.rcnn.selective_search import selective_search  # OpenCV, BGR

            bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
            inputs["proposals"] = tf.constant(selective_search(bgr, **self.proposal_options))
        out = self._detect(**inputs)
        keep = out["scores"].numpy() >= score_threshold
        return {
            "boxes": out["boxes"].numpy()[keep].reshape(-1, 4),
            "scores": out["scores"].numpy()[keep],
            "classes": out["classes"].numpy()[keep],
            "class_names": [name.decode() for name in out["class_names"].numpy()[keep]],
        }


def annotate(image: np.ndarray, detections: dict) -> np.ndarray:
    """A BGR copy of the RGB ``image`` with its detections drawn by
    :func:`kdet.visualize.draw_detections` (ready for ``cv2.imwrite`` or a video)."""
    return cv2.cvtColor(draw_detections(image, detections), cv2.COLOR_RGB2BGR)
