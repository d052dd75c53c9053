"""Decode, evaluate and export a KerasHub RetinaNet with kdet's contracts.

Decoding is KerasHub's (anchor deltas -> boxes with ``keras.utils.bounding_boxes``, then
``keras_hub.layers.NonMaxSuppression``) with thresholds chosen per use: a low confidence
threshold for evaluation (complete PR curves), the export's own for serving. Scores are
kdet's COCO-style :func:`kdet.metrics.evaluate_detections` in original image pixels.

ONNX and LiteRT cannot hold the SavedModel's NMS (``Bitcast`` / ``BitwiseAnd`` in
KerasHub's ``non_max_suppression``): :func:`raw_detector` is the graph without it that
:func:`kdet.deploy.export` converts, NMS done by :class:`kdet.deploy.Runtime`.

Example:
    >>> result, predictions = evaluate_retinanet(model, records.split("test"))  # doctest: +SKIP
    >>> export_retinanet(model, "saved_model", records.class_names)  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import keras
import keras_hub
import numpy as np
import tensorflow as tf
from keras import ops

from kdet.datasets.records import RecordSet
from kdet.export import export_detector
from kdet.metrics.detection import evaluate_detections
from kdet.models.retinanet.inputs import (
    boxes_to_original,
    evaluation_dataset,
    fit_to_model,
    original_sizes,
)

#: the served decoder's settings (the SavedModel's, and a raw export's default)
EXPORT_DECODER = {"confidence_threshold": 0.25, "iou_threshold": 0.5, "max_detections": 100}


def make_decoder(
    model,
    confidence_threshold: float = 0.001,
    iou_threshold: float = 0.5,
    max_detections: int = 100,
):
    """A ``keras_hub.layers.NonMaxSuppression`` in the model's box format."""
    return keras_hub.layers.NonMaxSuppression(
        bounding_box_format=model.bounding_box_format,
        from_logits=True,
        confidence_threshold=confidence_threshold,
        iou_threshold=iou_threshold,
        max_detections=max_detections,
    )


def detect_batch(model, images, decoder) -> dict:
    """Raw ``0..255`` images ``(B, H, W, 3)`` -> decoded detections (model's box format):
    ``{"boxes", "confidence", "labels", "num_detections"}``."""
    boxes, logits = decode_batch(model, images)
    return decoder(boxes, logits, images=images)


def decode_batch(model, images):
    """Raw ``0..255`` images ``(B, H, W, 3)`` -> every anchor's box (model's box format)
    ``(B, A, 4)`` and class logits ``(B, A, C)``, before NMS."""
    inputs = images if model.preprocessor is None else model.preprocessor(images)
    raw = model(inputs, training=False)
    height, width, channels = ops.shape(images)[1:]
    anchors = model.anchor_generator(images)
    anchors = ops.concatenate(list(anchors.values()), axis=0)
    boxes = keras.utils.bounding_boxes.decode_deltas_to_boxes(
        anchors=anchors,
        boxes_delta=ops.cast(raw["bbox_regression"], "float32"),
        encoded_format="center_xywh",
        anchor_format=model.anchor_generator.bounding_box_format,
        box_format=model.bounding_box_format,
        image_shape=(height, width, channels),
    )
    return boxes, ops.cast(raw["cls_logits"], "float32")


def predict_records(
    model, record_set: RecordSet, *, batch_size: int = 8, **decoder_options
) -> list[dict[str, np.ndarray]]:
    """Detections for every record as ``{"boxes" (xyxy original pixels), "scores",
    "classes"}`` NumPy arrays, in record order."""
    if model.bounding_box_format != "xyxy":
        raise ValueError(f"expected an xyxy model. Received: {model.bounding_box_format=}")
    size = tuple(model.input_shape[1:3])
    decoder = make_decoder(model, **decoder_options)
    sizes = original_sizes(record_set)
    predictions = []
    for batch in evaluation_dataset(record_set, image_size=size, batch_size=batch_size):
        decoded = detect_batch(model, batch["images"], decoder)
        for i in range(batch["images"].shape[0]):
            count = int(decoded["num_detections"][i])
            height, width = sizes[len(predictions)]
            boxes = boxes_to_original(decoded["boxes"][i, :count], height, width, size)
            predictions.append(
                {
                    "boxes": np.asarray(boxes),
                    "scores": np.asarray(decoded["confidence"][i, :count], np.float32),
                    "classes": np.asarray(decoded["labels"][i, :count]).astype(int),
                }
            )
    return predictions


def evaluate_retinanet(model, record_set: RecordSet, *, batch_size: int = 8, **decoder_options):
    """COCO-style evaluation: ``(kdet.metrics.DetectionResult, predictions)``."""
    predictions = predict_records(model, record_set, batch_size=batch_size, **decoder_options)
    truth = [{"boxes": r.boxes_array(), "classes": r.classes_array()} for r in record_set.records]
    return evaluate_detections(truth, predictions, record_set.class_names), predictions


def make_detect_fn(model, image_size=None, **decoder_options):
    """``uint8 (H, W, 3) -> {"boxes" xyxy pixels, "scores", "classes"}`` in TF ops: the
    image fitted to ``image_size`` (default: the model's input size; aspect ratio kept),
    decoded and NMS-filtered, boxes mapped back to its pixels."""
    decoder = make_decoder(model, **{**EXPORT_DECODER, **decoder_options})
    size = tuple(image_size or model.input_shape[1:3])

    def detect(image):
        images = fit_to_model(image, size)[tf.newaxis]
        decoded = detect_batch(model, images, decoder)
        count = decoded["num_detections"][0]
        boxes = keras.utils.bounding_boxes.convert_format(
            decoded["boxes"][0, :count],
            source=model.bounding_box_format,
            target="xyxy",
            height=size[0],
            width=size[1],
        )
        shape = tf.shape(image)
        return {
            "boxes": boxes_to_original(boxes, shape[0], shape[1], size),
            "scores": decoded["confidence"][0, :count],
            "classes": tf.cast(decoded["labels"][0, :count], tf.int32),
        }

    return detect


def export_retinanet(
    model, path: str | os.PathLike, class_names: Sequence[str], **decoder_options
) -> str:
    """Save ``model`` as a SavedModel with kdet's serving contract (:mod:`kdet.export`):
    one image of any size in, fitted to the model's input (aspect ratio kept), decoded
    and NMS-filtered in the graph, boxes in that image's pixels."""
    if len(class_names) != model.num_classes:
        raise ValueError(
            f"class_names has {len(class_names)} names for a model with "
            f"{model.num_classes} classes. Received: {class_names=}"
        )
    detect = make_detect_fn(model, **decoder_options)
    return export_detector(path, detect, class_names, trackable=model)


def raw_detector(model, *, confidence_threshold=None, iou_threshold=None, max_detections=None):
    """The network plus box decoding of an ``xyxy`` ``RetinaNetObjectDetector``, without
    NMS, for :func:`kdet.deploy.export` (ONNX, LiteRT).

    Returns:
        ``(raw, num_classes, settings)``: ``raw(images (1, H, W, 3) float32 0..255)`` gives
        ``{"boxes": (A, 4) xyxy in model-input pixels, "scores": (A, C) sigmoid}``;
        ``settings`` are the caller-side steps (letterbox resize, NMS thresholds; default
        :data:`EXPORT_DECODER`).

    Example:
        >>> raw, num_classes, settings = raw_detector(model)  # doctest: +SKIP
        >>> settings["resize"], settings["nms"]  # doctest: +SKIP
        ('letterbox', True)
    """
    if model.bounding_box_format != "xyxy":
        raise ValueError(f"expected an xyxy model. Received: {model.bounding_box_format=}")

    def raw(images):
        boxes, logits = decode_batch(model, images)
        return {"boxes": boxes[0], "scores": tf.sigmoid(logits[0])}

    given = {
        "confidence_threshold": confidence_threshold,
        "iou_threshold": iou_threshold,
        "max_detections": max_detections,
    }
    nms = {k: EXPORT_DECODER[k] if v is None else v for k, v in given.items()}
    return raw, model.num_classes, {"resize": "letterbox", "nms": True, **nms}
