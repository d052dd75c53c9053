"""Export a single-box model as a SavedModel with kdet's serving contract.

The served function resizes any ``uint8`` image to the model's input size exactly as
training did, runs the model and scales its relative box back to that image's pixels.

Example:
    >>> export_single_box_model(model, "data/models/bbox_regressor/saved_model",
    ...                         class_names=["airplanes"])  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import keras
import tensorflow as tf

from kdet.export import export_detector
from kdet.models.single_box.data import resize_image


def single_box_detect_fn(model: keras.Model):
    """``uint8 (H, W, 3) -> {"boxes": (1, 4) xyxy pixels, "scores": (1,), "classes": (1,)}``.

    A box-only model reports class 0 with score 1 (it has no confidence output).
    """
    image_size = tuple(int(v) for v in model.input_shape[1:3])

    def detect(image):
        shape = tf.cast(tf.shape(image), tf.float32)
        height, width = shape[0], shape[1]
        outputs = model(resize_image(image, image_size)[tf.newaxis], training=False)
        # The 4 sigmoids are independent, so a badly trained model can put x2 before x1:
        # the contract promises ordered xyxy corners.
        x1, y1, x2, y2 = tf.unstack(tf.cast(outputs["bounding_box"], tf.float32), axis=-1)
        relative = tf.stack(
            [tf.minimum(x1, x2), tf.minimum(y1, y2), tf.maximum(x1, x2), tf.maximum(y1, y2)],
            axis=-1,
        )
        boxes = relative * tf.stack([width, height, width, height])
        if "class_label" in outputs:
            probabilities = tf.cast(outputs["class_label"], tf.float32)
            classes = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
            scores = tf.reduce_max(probabilities, axis=-1)
        else:
            classes = tf.zeros([1], tf.int32)
            scores = tf.ones([1], tf.float32)
        return {"boxes": boxes, "scores": scores, "classes": classes}

    return detect


def export_single_box_model(
    model: keras.Model, path: str | os.PathLike, class_names: Sequence[str]
) -> str:
    """Save ``model`` with :func:`kdet.export.export_detector`; returns the path."""
    return export_detector(path, single_box_detect_fn(model), class_names, trackable=model)
