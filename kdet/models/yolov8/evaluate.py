"""Evaluate a YOLOv8 detector with kdet's COCO-style evaluator, in original image pixels.

Predictions are decoded by the model's own decoder (KerasCV box decoding + NMS) with
evaluation thresholds (a low confidence threshold, so the PR curve is complete), mapped
back from the letterboxed input to each image's pixels, and scored by
``kdet.metrics.evaluate_detections`` (every class id counts, class 0 included).

Example:
    >>> result, predictions = evaluate_yolov8(model, records.split("test"),
    ...                                       image_size=(128, 128))  # doctest: +SKIP
    >>> result.mAP50                                                  # doctest: +SKIP
"""

from __future__ import annotations

import keras_cv
import numpy as np

from kdet.datasets.records import RecordSet
from kdet.metrics.detection import evaluate_detections
from kdet.models.yolov8.builder import image_size_pair
from kdet.models.yolov8.decode import decode_predictions, make_decoder
from kdet.models.yolov8.inputs import boxes_to_original, evaluation_dataset, original_sizes


def predict_records(
    model,
    record_set: RecordSet,
    *,
    image_size,
    batch_size: int = 8,
    confidence_threshold: float = 0.001,
    iou_threshold: float = 0.6,
    max_detections: int = 100,
) -> list[dict[str, np.ndarray]]:
    """Detections for every record, as ``{"boxes" (xyxy pixels of the original image,
    clipped to it), "scores", "classes"}`` NumPy arrays, in record order."""
    size = image_size_pair(image_size)
    decoder = make_decoder(
        model.bounding_box_format,
        confidence_threshold=confidence_threshold,
        iou_threshold=iou_threshold,
        max_detections=max_detections,
    )
    predictions = []
    sizes = original_sizes(record_set)
    dataset = evaluation_dataset(record_set, image_size=size, batch_size=batch_size)
    for batch in dataset:
        images = batch["images"]
        decoded = decode_predictions(model, model(images, training=False), images, decoder)
        boxes = keras_cv.bounding_box.convert_format(
            decoded["boxes"], source=model.bounding_box_format, target="xyxy", images=images
        )
        for i in range(images.shape[0]):
            count = int(decoded["num_detections"][i])
            height, width = sizes[len(predictions)]
            predictions.append(
                {
                    "boxes": boxes_to_original(boxes[i, :count], height, width, size).numpy(),
                    "scores": decoded["confidence"][i, :count].numpy(),
                    "classes": decoded["classes"][i, :count].numpy().astype(int),
                }
            )
    return predictions


def ground_truth(record_set: RecordSet) -> list[dict[str, np.ndarray]]:
    """``{"boxes", "classes"}`` per record, in record order (original pixels, xyxy)."""
    return [{"boxes": r.boxes_array(), "classes": r.classes_array()} for r in record_set.records]


def evaluate_yolov8(model, record_set: RecordSet, *, image_size, batch_size: int = 8, **decoder):
    """COCO-style evaluation of ``model`` on ``record_set``.

    Returns:
        ``(result, predictions)``: a ``kdet.metrics.DetectionResult`` (``mAP50``, ``mAP``,
        per-class AP, PR curves) and the per-image predictions.
    """
    predictions = predict_records(
        model, record_set, image_size=image_size, batch_size=batch_size, **decoder
    )
    result = evaluate_detections(ground_truth(record_set), predictions, record_set.class_names)
    return result, predictions
