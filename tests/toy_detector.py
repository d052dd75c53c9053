"""A tiny exported detector with kdet's serving contract, for tests of generic tooling.

It reports two boxes per image whatever the pixels: the whole image (class 1, ``dog``,
score from a one-unit Keras model so variables must travel with the SavedModel) and its
top-left quarter (class 0, ``cat``, score 0.3).
"""

import keras
import tensorflow as tf

from kdet.export import export_detector

CLASS_NAMES = ["cat", "dog"]
WHOLE_IMAGE_SCORE = float(tf.sigmoid(2.0))


def build_toy_detector() -> tuple[keras.Model, callable]:
    """A Keras model and the detect_fn that uses it."""
    model = keras.Sequential(
        [
            keras.Input((None, None, 3)),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(
                1,
                activation="sigmoid",
                kernel_initializer="zeros",
                bias_initializer=keras.initializers.Constant(2.0),
                name="score",
            ),
        ]
    )

    def detect(image):
        height = tf.cast(tf.shape(image)[0], tf.float32)
        width = tf.cast(tf.shape(image)[1], tf.float32)
        score = model(tf.cast(image, tf.float32)[tf.newaxis] / 255.0)[0, 0]
        boxes = tf.stack([[0.0, 0.0, width, height], [0.0, 0.0, width / 2, height / 2]])
        return {"boxes": boxes, "scores": tf.stack([score, 0.3]), "classes": tf.constant([1, 0])}

    return model, detect


def export_toy_detector(path) -> str:
    """Export the toy detector to ``path``; returns the path."""
    model, detect = build_toy_detector()
    return export_detector(path, detect, CLASS_NAMES, trackable=model)


def export_toy_detector_with_names(path) -> list[str]:
    """Export the toy detector to ``path``; returns its class names (contract-test form)."""
    export_toy_detector(path)
    return CLASS_NAMES


class ToyProposalDetector(tf.Module):
    """The proposal-taking contract (R-CNN style): reports the largest proposal, class 0."""

    def __init__(self):
        super().__init__()
        self.names = tf.constant(CLASS_NAMES)

    def _detect(self, proposals):
        areas = (proposals[:, 2] - proposals[:, 0]) * (proposals[:, 3] - proposals[:, 1])
        box = tf.gather(proposals, tf.argmax(areas))[tf.newaxis]
        classes = tf.constant([0])
        return {
            "boxes": box,
            "scores": tf.constant([0.8]),
            "classes": classes,
            "class_names": tf.gather(self.names, classes),
            "num_detections": tf.constant(1),
        }

    @tf.function(
        input_signature=[
            tf.TensorSpec([], tf.string, name="image_bytes"),
            tf.TensorSpec([None, 4], tf.float32, name="proposals"),
        ]
    )
    def serve_bytes(self, image_bytes, proposals):
        return self._detect(proposals)

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, None, 3], tf.uint8, name="image"),
            tf.TensorSpec([None, 4], tf.float32, name="proposals"),
        ]
    )
    def serve_image(self, image, proposals):
        return self._detect(proposals)


def export_toy_proposal_detector(path) -> str:
    """Export :class:`ToyProposalDetector` with kdet's two signature names."""
    module = ToyProposalDetector()
    signatures = {"serving_default": module.serve_bytes, "detect_image": module.serve_image}
    tf.saved_model.save(module, str(path), signatures=signatures)
    return str(path)


def export_toy_proposal_detector_with_names(path) -> list[str]:
    """Export the toy proposal detector to ``path``; returns its class names."""
    export_toy_proposal_detector(path)
    return CLASS_NAMES
