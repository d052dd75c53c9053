"""Decode raw YOLOv8 outputs with a chosen NMS, reusing KerasCV's own decoding.

Evaluation wants a low confidence threshold (a complete PR curve) and the SavedModel its
own thresholds, while the model keeps the decoder it was built with. KerasCV only exposes
``decode_predictions`` through the model's decoder, and its public setter also resets the
compiled ``fit``/``predict`` functions, so the decoder is swapped on the private attribute
for the duration of one call.

Example:
    >>> decoder = make_decoder("xyxy", confidence_threshold=0.001)
    >>> decoded = decode_predictions(model, model(images), images, decoder)  # doctest: +SKIP
    >>> sorted(decoded)                                                       # doctest: +SKIP
    ['boxes', 'classes', 'confidence', 'num_detections']
"""

from __future__ import annotations

import keras_cv


def make_decoder(
    bounding_box_format: str,
    *,
    confidence_threshold: float = 0.25,
    iou_threshold: float = 0.6,
    max_detections: int = 100,
) -> keras_cv.layers.NonMaxSuppression:
    """KerasCV's class-wise NMS layer for sigmoid scores."""
    return keras_cv.layers.NonMaxSuppression(
        bounding_box_format=bounding_box_format,
        from_logits=False,
        confidence_threshold=confidence_threshold,
        iou_threshold=iou_threshold,
        max_detections=max_detections,
    )


def decode_predictions(model, raw, images, decoder=None) -> dict:
    """``model.decode_predictions(raw, images)`` with ``decoder`` (default: the model's)."""
    if decoder is None:
        return model.decode_predictions(raw, images)
    own = model.prediction_decoder
    model._prediction_decoder = decoder
    try:
        return model.decode_predictions(raw, images)
    finally:
        model._prediction_decoder = own
