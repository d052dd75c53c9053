"""Export a YOLOv8 detector as a SavedModel with kdet's serving contract.

The serving graph fits one image of any size into the model's input (aspect ratio kept,
centred, as in training), runs the network, decodes boxes and applies NMS with KerasCV's
own decoder (all TensorFlow ops), and maps boxes back to that image's pixels. See
``kdet.export`` for the signatures.

Example:
    >>> export_yolov8(model, "data/models/shapes_yolov8/saved_model",
    ...               class_names=["rectangle", "ellipse", "triangle"])  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import keras_cv
import numpy as np
import tensorflow as tf

from kdet.export import export_detector
from kdet.models.yolov8.decode import decode_predictions, make_decoder
from kdet.models.yolov8.inputs import boxes_to_original, fit_to_model


def make_detect_fn(
    model,
    image_size=None,
    *,
    confidence_threshold=None,
    iou_threshold=None,
    max_detections=None,
):
    """``uint8 (H, W, 3) -> {"boxes" xyxy pixels, "scores", "classes"}`` in TF ops.

    The image is fitted to ``image_size`` (default: the model's input size); thresholds
    default to those of the model's prediction decoder.
    """
    own = model.prediction_decoder
    decoder = make_decoder(
        model.bounding_box_format,
        confidence_threshold=own.confidence_threshold
        if confidence_threshold is None
        else confidence_threshold,
        iou_threshold=own.iou_threshold if iou_threshold is None else iou_threshold,
        max_detections=own.max_detections if max_detections is None else max_detections,
    )
    image_size = tuple(image_size or model.input_shape[1:3])

    def detect(image):
        images = fit_to_model(image, image_size)[tf.newaxis]
        raw = model(images, training=False)
        decoded = decode_predictions(model, raw, images, decoder)
        boxes = keras_cv.bounding_box.convert_format(
            decoded["boxes"], source=model.bounding_box_format, target="xyxy", images=images
        )
        count = decoded["num_detections"][0]
        shape = tf.shape(image)
        return {
            "boxes": boxes_to_original(boxes[0, :count], shape[0], shape[1], image_size),
            "scores": decoded["confidence"][0, :count],
            "classes": tf.cast(decoded["classes"][0, :count], tf.int32),
        }

    return detect


def export_yolov8(
    model, path: str | os.PathLike, class_names: Sequence[str], **decoder_options
) -> str:
    """Save ``model`` as a SavedModel with the serving contract; returns the path.

    Args:
        model: a ``YOLOV8Detector`` with a fixed input size.
        path: output folder.
        class_names: names indexed by class id (stored in the SavedModel).
        **decoder_options: ``confidence_threshold``, ``iou_threshold``,
            ``max_detections`` overriding the model's own decoder.
    """
    if len(class_names) != model.num_classes:
        raise ValueError(
            f"class_names has {len(class_names)} names for a model with "
            f"{model.num_classes} classes. Received: {class_names=}"
        )
    return export_detector(
        path, make_detect_fn(model, **decoder_options), class_names, trackable=model
    )


def raw_detector(model, *, confidence_threshold, iou_threshold, max_detections):
    """The network plus box decoding of a ``YOLOV8Detector``, without NMS, for formats that
    cannot hold KerasCV's NMS (ONNX, LiteRT; see :mod:`kdet.deploy`).

    Returns:
        ``(raw, num_classes, settings)``: ``raw(images (1, H, W, 3) float32)`` gives
        ``{"boxes": (A, 4) xyxy in model-input pixels, "scores": (A, C)}``; ``settings``
        are the caller-side steps (letterbox resize, NMS thresholds).
    """
    from keras_cv.src.models.object_detection.yolo_v8.yolo_v8_detector import (
        decode_regression_to_boxes,
        dist2bbox,
        get_anchors,
    )

    height, width = (int(v) for v in model.input_shape[1:3])
    anchors, strides = get_anchors(image_shape=(height, width, 3))
    anchors = np.asarray(anchors, np.float32)
    strides = np.asarray(strides, np.float32)[:, None]

    def raw(images):
        pred = model(images, training=False)
        distances = decode_regression_to_boxes(tf.cast(pred["boxes"], tf.float32))
        boxes = dist2bbox(distances, tf.constant(anchors)) * tf.constant(strides)
        return {"boxes": boxes[0], "scores": tf.cast(pred["classes"], tf.float32)[0]}

    own = model.prediction_decoder
    extra = {
        "resize": "letterbox",
        "nms": True,
        "confidence_threshold": float(
            own.confidence_threshold if confidence_threshold is None else confidence_threshold
        ),
        "iou_threshold": float(own.iou_threshold if iou_threshold is None else iou_threshold),
        "max_detections": int(own.max_detections if max_detections is None else max_detections),
    }
    return raw, model.num_classes, extra
