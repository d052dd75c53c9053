"""SavedModels with a serving contract that plain TensorFlow can call.

Every exported detector has two signatures, both for one image:

* ``serving_default(image_bytes)``: a scalar ``tf.string`` of JPEG/PNG/BMP/GIF bytes;
* ``detect_image(image)``: a ``uint8`` tensor ``(height, width, 3)`` of any size;

and both return ``boxes`` (float32 ``(N, 4)``, ``xyxy`` in that image's pixels),
``scores`` (float32 ``(N,)``), ``classes`` (int32 ``(N,)``), ``class_names`` (string
``(N,)``) and ``num_detections`` (int32). The class names travel inside the model. Loading
needs TensorFlow only:

Example:
    >>> import tensorflow as tf
    >>> served = tf.saved_model.load("data/models/raccoon_rcnn/saved_model")  # doctest: +SKIP
    >>> out = served.signatures["serving_default"](image_bytes=tf.io.read_file("a.jpg"))
    >>> out["boxes"], out["class_names"]  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import tensorflow as tf

from kdet import atomic
from kdet.data.decode import decode_image

OUTPUT_KEYS = ("boxes", "scores", "classes", "class_names", "num_detections")


def decode_image_bytes(image_bytes: tf.Tensor) -> tf.Tensor:
    """Decode one request's encoded image to ``uint8 (H, W, 3)`` in the serving graph.

    Empty bytes, bytes of another format and images declaring more than
    ``kdet.data.decode.MAX_PIXELS`` pixels are rejected before decoding with an
    ``InvalidArgumentError`` that starts with ``image_bytes:`` and says what was expected
    (see :func:`kdet.data.decode.decode_image`).
    """
    return decode_image(image_bytes, "image_bytes")


class DetectorServingModule(tf.Module):
    """Wraps a per-image detection function into the serving contract.

    Args:
        detect_fn: ``uint8 (H, W, 3) -> {"boxes": (N, 4) xyxy pixels, "scores": (N,),
            "classes": (N,) int}``, written with TensorFlow ops (it is traced).
        class_names: names indexed by class id.
        trackable: the Keras model(s) ``detect_fn`` uses, so their variables are saved.
    """

    def __init__(self, detect_fn: Callable, class_names: Sequence[str], trackable=None):
        super().__init__(name="kdet_detector")
        self._detect_fn = detect_fn
        self.trackable = trackable
        self.class_name_table = tf.constant(list(class_names), dtype=tf.string)

    def _serve(self, image: tf.Tensor, *extra_inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        tf.debugging.assert_positive(
            tf.size(image), message="image is empty: expected a (height, width, 3) uint8 image"
        )
        result = self._detect_fn(image, *extra_inputs)
        classes = tf.cast(result["classes"], tf.int32)
        return {
            "boxes": tf.cast(result["boxes"], tf.float32),
            "scores": tf.cast(result["scores"], tf.float32),
            "classes": classes,
            "class_names": tf.gather(self.class_name_table, classes),
            "num_detections": tf.shape(classes)[0],
        }

    @tf.function(input_signature=[tf.TensorSpec([], tf.string, name="image_bytes")])
    def serve_bytes(self, image_bytes):
        """Detections for one encoded image."""
        # A loaded signature checks the dtype of its inputs but not their shape.
        image_bytes = tf.ensure_shape(image_bytes, [])
        return self._serve(decode_image_bytes(image_bytes))

    @tf.function(input_signature=[tf.TensorSpec([None, None, 3], tf.uint8, name="image")])
    def serve_image(self, image):
        """Detections for one uint8 image."""
        return self._serve(tf.ensure_shape(image, [None, None, 3]))


class ProposalDetectorServingModule(DetectorServingModule):
    """The serving contract for detectors that also take region proposals per image.

    Proposals (e.g. selective search, which is OpenCV code and cannot run inside a
    TensorFlow graph) are computed by the caller and passed with the image: both
    signatures take an extra ``proposals`` input, float32 ``(N, 4)`` ``xyxy`` in the
    image's pixels; the outputs are those of :class:`DetectorServingModule`.

    Args:
        detect_fn: ``(uint8 (H, W, 3), float32 (N, 4)) -> {"boxes", "scores", "classes"}``.
        class_names, trackable: as for :class:`DetectorServingModule`.
    """

    @tf.function(
        input_signature=[
            tf.TensorSpec([], tf.string, name="image_bytes"),
            tf.TensorSpec([None, 4], tf.float32, name="proposals"),
        ]
    )
    def serve_bytes(self, image_bytes, proposals):
        """Detections for one encoded image and its proposals."""
        image_bytes = tf.ensure_shape(image_bytes, [])
        return self._serve(decode_image_bytes(image_bytes), tf.ensure_shape(proposals, [None, 4]))

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, None, 3], tf.uint8, name="image"),
            tf.TensorSpec([None, 4], tf.float32, name="proposals"),
        ]
    )
    def serve_image(self, image, proposals):
        """Detections for one uint8 image and its proposals."""
        image = tf.ensure_shape(image, [None, None, 3])
        return self._serve(image, tf.ensure_shape(proposals, [None, 4]))


def export_detector(
    path: str | os.PathLike,
    detect_fn: Callable,
    class_names: Sequence[str],
    trackable=None,
) -> str:
    """Save ``detect_fn`` as a SavedModel with the serving contract; returns the path."""
    return _save(DetectorServingModule(detect_fn, class_names, trackable), path)


def export_proposal_detector(
    path: str | os.PathLike,
    detect_fn: Callable,
    class_names: Sequence[str],
    trackable=None,
) -> str:
    """Save a detector that takes an image *and its proposals* (see
    :class:`ProposalDetectorServingModule`); returns the path.

    Example:
        >>> export_proposal_detector("saved_model", rcnn.detect, ["raccoon"], rcnn.classifier)
        ... # doctest: +SKIP
        >>> served.signatures["detect_image"](image=image, proposals=boxes)  # doctest: +SKIP
    """
    return _save(ProposalDetectorServingModule(detect_fn, class_names, trackable), path)


def _save(module: DetectorServingModule, path: str | os.PathLike) -> str:
    """Write ``module`` to a hidden ``.NAME.*.partial`` folder beside ``path`` and rename it
    into place when complete (replacing an older export), so an interrupted export never
    leaves a half-written SavedModel under ``path``.

    Gradient functions are not traced (``experimental_custom_gradients=False``): a serving
    model is never trained through, and skipping them halves the export time of a trained
    YOLOv8 (61 s -> 33 s here). Loading then logs TensorFlow's harmless "unsaved custom
    gradients" warning."""
    signatures = {"serving_default": module.serve_bytes, "detect_image": module.serve_image}
    options = tf.saved_model.SaveOptions(experimental_custom_gradients=False)
    atomic.replace_folder(
        path, lambda staging: tf.saved_model.save(module, staging, signatures, options)
    )
    return str(path)
