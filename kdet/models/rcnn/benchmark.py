"""Per-image R-CNN inference, the tutorial's way against kdet's, with the same classifier.

The tutorial's way (:func:`tutorial_detect`): selective search at full size, the first
200 proposals cut out and resized one by one in a Python loop (``cv2.resize``, cubic),
classified in one batch, then NMS. kdet's way (:func:`kdet_detect`): selective search on
a shrunk copy of the image, then :class:`~kdet.models.rcnn.detector.RCNNDetector` (every
crop cut and resized by one ``crop_and_resize`` in a compiled graph, one batch, NMS).
Both are timed from a decoded image to detections.

Example:
    >>> results = run_benchmark(classifier, records.split("test"))  # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections.abc import Callable

import cv2
import keras
import numpy as np

from kdet.datasets.records import RecordSet
from kdet.metrics import evaluate_detections
from kdet.models.rcnn.detector import RCNNDetector, select_detections
from kdet.models.rcnn.proposals import read_image, selective_search


def tutorial_detect(
    classifier: keras.Model,
    image: np.ndarray,
    *,
    max_proposals: int = 200,
    crop_size: int | None = None,
    score_threshold: float = 0.5,
    iou_threshold: float = 0.3,
    max_detections: int = 20,
) -> dict[str, np.ndarray]:
    """The R-CNN tutorial's inference on one RGB ``uint8`` image (proposals as they are:
    a classifier's box regression, if it has one, is not applied).

    ``crop_size`` defaults to the classifier's input side (224 in the tutorial).
    """
    crop_size = crop_size or int(classifier.input_shape[1])
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    boxes = selective_search(bgr, mode="fast")[:max_proposals]
    crops = []
    for x1, y1, x2, y2 in boxes.astype(int):
        crop = image[y1:y2, x1:x2]
        crops.append(cv2.resize(crop, (crop_size, crop_size), interpolation=cv2.INTER_CUBIC))
    batch = np.asarray(crops, np.float32).reshape(-1, crop_size, crop_size, 3)
    probs = classifier.predict_on_batch(batch) if len(batch) else np.zeros((0, 2), np.float32)
    if isinstance(probs, dict):  # a classifier with box regression: the tutorial has none
        probs = probs["class_label"]
    out = select_detections(
        boxes,
        np.asarray(probs)[:, 1:],
        score_threshold=score_threshold,
        iou_threshold=iou_threshold,
        max_detections=max_detections,
    )
    return {key: value.numpy() for key, value in out.items()}


def kdet_detect(
    detector: RCNNDetector,
    image: np.ndarray,
    *,
    mode: str = "fast",
    max_side: int | None = 200,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """kdet's inference on one RGB ``uint8`` image: shrunk selective search + detector."""
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    proposals = selective_search(bgr, mode=mode, max_side=max_side, seed=seed)
    return {key: value.numpy() for key, value in detector(image, proposals).items()}


def time_detectors(
    detectors: dict[str, Callable], record_set: RecordSet
) -> dict[str, dict[str, float]]:
    """Time every ``detect(image)`` on every image and evaluate each one's detections.

    The detectors take turns image by image (after one warm-up call each), so a load
    change on a shared machine hits all of them alike.

    Returns:
        ``{name: {"latency_ms": median per-image ms, "latency_p90_ms": ...,
        "latency_mean_ms": ... (total time / images), "mAP50": ..., "mAP": ...}}``.
    """
    images = [read_image(record_set.image_path(r)) for r in record_set.records]
    truth = [{"boxes": r.boxes_array(), "classes": r.classes_array()} for r in record_set.records]
    for detect in detectors.values():
        detect(images[0])
    detections = {name: [] for name in detectors}
    times = {name: [] for name in detectors}
    for image in images:
        for name, detect in detectors.items():
            start = time.perf_counter()
            detections[name].append(detect(image))
            times[name].append((time.perf_counter() - start) * 1000)
    results = {}
    for name in detectors:
        result = evaluate_detections(truth, detections[name], record_set.class_names)
        results[name] = {
            "latency_ms": float(np.median(times[name])),
            "latency_p90_ms": float(np.percentile(times[name], 90)),
            "latency_mean_ms": float(np.mean(times[name])),
            "mAP50": result.mAP50,
            "mAP": result.mAP,
        }
    return results


def run_benchmark(
    classifier: keras.Model,
    record_set: RecordSet,
    *,
    kdet_settings: list[dict],
    tutorial_proposals: int = 200,
    score_threshold: float = 0.5,
    iou_threshold: float = 0.3,
    max_detections: int = 20,
    others: dict[str, Callable] | None = None,
) -> dict:
    """Time the tutorial's way and each kdet setting; pick kdet's fastest setting whose
    mAP@0.5 is at least the tutorial's.

    Args:
        classifier: the trained R-CNN classifier both ways use.
        record_set: the images (e.g. the 40 raccoon test images).
        kdet_settings: dicts of ``mode``, ``max_side`` (selective search) and
            ``max_proposals`` (first proposals classified; ``None``: all).
        tutorial_proposals: proposals the tutorial classifies (200).
        score_threshold, iou_threshold, max_detections: the same for both ways.
        others: more ``detect(image)`` callables timed alongside (e.g. Fast R-CNN, which
            has its own model and so cannot be the "best" same-classifier setting).

    Returns:
        ``{"tutorial": {...}, "kdet": [{...} per setting], "best": {...} or None,
        "speedup": tutorial / best median ms or None, "speedup_total": the same of the
        total times, "others": {name: {...}}}``; each entry as :func:`time_detectors`'.
    """
    common = {
        "score_threshold": score_threshold,
        "iou_threshold": iou_threshold,
        "max_detections": max_detections,
    }
    detectors = {
        "tutorial": lambda image: tutorial_detect(
            classifier, image, max_proposals=tutorial_proposals, **common
        )
    }
    for k, setting in enumerate(kdet_settings):
        detector = RCNNDetector(classifier, max_proposals=setting.get("max_proposals"), **common)
        options = {"mode": setting.get("mode", "fast"), "max_side": setting.get("max_side")}
        detectors[f"kdet{k}"] = lambda image, d=detector, o=options: kdet_detect(d, image, **o)
    others = others or {}
    clash = set(others) & set(detectors)
    if clash:
        raise ValueError(f"Names taken by the benchmark's own detectors: {sorted(clash)}")
    timed = time_detectors({**detectors, **others}, record_set)
    tutorial = timed["tutorial"]
    runs = [{**setting, **timed[f"kdet{k}"]} for k, setting in enumerate(kdet_settings)]
    good = [run for run in runs if run["mAP50"] >= tutorial["mAP50"]]
    best = min(good, key=lambda run: run["latency_ms"]) if good else None
    speedup = tutorial["latency_ms"] / best["latency_ms"] if best else None
    total = tutorial["latency_mean_ms"] / best["latency_mean_ms"] if best else None
    return {
        "tutorial": tutorial,
        "kdet": runs,
        "best": best,
        "speedup": speedup,
        "speedup_total": total,
        "others": {name: timed[name] for name in others},
    }
