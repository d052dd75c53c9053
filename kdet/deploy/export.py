"""Convert a kdet detector to ONNX, LiteRT (TFLite) or a SavedModel, in one call.

Two kinds of artifact come out, depending on what is converted:

* **contract** (from a kdet serving SavedModel folder, see :mod:`kdet.export`): the whole
  ``detect_image`` signature, ``uint8 (H, W, 3)`` of any size in, ``boxes`` (``xyxy`` image
  pixels), ``scores``, ``classes`` out; resizing and NMS stay in the graph. What moves to
  the caller: *image decoding* (``serving_default``'s ``image_bytes`` input is not
  converted; pass decoded pixels) and *class-name lookup* (the ``class_names`` string
  output is dropped; names travel in the metadata). Neither format can hold KerasCV's
  NMS: ONNX has no op for ``non_max_suppression_padded``'s ``Bitcast`` / ``BitwiseAnd``
  (and tf2onnx cannot order its nested while loops), and TFLite builtins have no kernel
  for it or for YOLOv8's convolutions on a dynamic-size input (they become Select TF
  ``FlexConv2D`` ops, which the ``ai_edge_litert`` wheel cannot run). So converting a YOLOv8
  SavedModel raises :class:`DeployError` saying so; export the Keras model instead.
  Single-box SavedModels (no NMS) convert to both, and OpenCV 5's DNN module runs their
  ONNX graph too (``uint8`` image in). R-CNN / Fast R-CNN SavedModels convert to ONNX with
  their second input, ``proposals`` (float32 ``(N, 4)`` ``xyxy`` image pixels); what moves
  to the caller besides decoding is *selective search* (OpenCV code, in no graph), whose
  settings (``mode``, ``max_side``, ...) the metadata carries under ``proposals``. Their
  LiteRT conversion fails: ``tf.image.crop_and_resize`` (R-CNN's crops, Fast R-CNN's
  RoIAlign) has no TFLite builtin kernel, only the Select TF op ``CropAndResize``.
* **raw** (from a Keras model: a KerasCV ``YOLOV8Detector`` or a single-box model with a
  ``bounding_box`` output): the network plus box decoding at the model's fixed input size,
  float32 ``(1, H, W, 3)`` (pixel values 0-255) in, ``boxes`` ``(A, 4)`` (``xyxy`` in the
  model input's pixels) and ``scores`` ``(A, C)`` out. What moves to the caller: resizing
  the image to the input size (letterbox or stretch), argmax/max over classes, NMS
  (YOLOv8) and mapping boxes back to the image (:mod:`kdet.deploy.postprocess`). These
  graphs are fixed-shape and NMS-free, so OpenCV's ``cv2.dnn.readNetFromONNX`` reads the
  ONNX ones (same outputs as ONNX Runtime; OpenCV then does the caller's steps itself) and
  full-integer quantization works on them. A raw ``saved_model`` export has one signature,
  ``raw``, and is not a serving-contract SavedModel.

:class:`kdet.deploy.Runtime` does whichever steps moved (selective search included), so
``Runtime(path)(image)`` gives the same result as the SavedModel's ``detect_image`` (with
:class:`kdet.predict.Detector`'s proposals) for both kinds.

Metadata (class names, kind, input size, resize mode, NMS and proposal settings) is a JSON
object:
ONNX keeps it in ``metadata_props`` under key ``kdet``; LiteRT in a sidecar file
``NAME.classes.json`` beside ``NAME.tflite`` (the flatbuffer's own metadata needs the
``tflite-support`` writer, which is not installed); a SavedModel folder in
``assets.extra/kdet.json`` (a contract SavedModel carries its class names in its graph).

Example:
    >>> from kdet import deploy
    >>> deploy.export("data/models/bbox_regressor/saved_model", "box.tflite",
    ...               format="litert")  # doctest: +SKIP
    >>> deploy.export(yolo_keras_model, "yolo.onnx", format="onnx",
    ...               class_names=["cat", "dog"])  # doctest: +SKIP
    >>> deploy.export(yolo_keras_model, "yolo_int8.tflite", format="litert", quantize="int8",
    ...               representative_images=images, class_names=["cat", "dog"])
    ... # doctest: +SKIP
    >>> deploy.Runtime("yolo.onnx")(image)["boxes"]  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from kdet import atomic
from kdet.deploy.postprocess import fit_image
from kdet.errors import KdetError

FORMATS = ("onnx", "litert", "saved_model")
QUANTIZE = ("none", "float16", "int8")
SUFFIXES = {"onnx": ".onnx", "litert": ".tflite"}
METADATA_KEY = "kdet"
SIDECAR_SUFFIX = ".classes.json"
SAVED_MODEL_METADATA = "assets.extra/kdet.json"
ONNX_OPSET = 17
CONTRACT_OUTPUTS = ("boxes", "scores", "classes")


class DeployError(KdetError):
    """A model cannot be converted to a format, or an artifact is unreadable."""


def sidecar_path(path: str | os.PathLike) -> Path:
    """``NAME.tflite`` -> ``NAME.classes.json``."""
    path = Path(path)
    return path.with_name(path.stem + SIDECAR_SUFFIX)


def export(
    model,
    path: str | os.PathLike,
    format: str = "onnx",
    quantize: str = "none",
    representative_images: Iterable[np.ndarray] | None = None,
    *,
    class_names: Sequence[str] | None = None,
    confidence_threshold: float | None = None,
    iou_threshold: float | None = None,
    max_detections: int | None = None,
    proposals: Mapping | None = None,
) -> str:
    """Write ``model`` to ``path`` as ``format``; returns the path.

    Args:
        model: a kdet serving SavedModel folder (contract artifact) or a Keras model
            (raw artifact); see the module docstring for what each keeps in its graph.
        path: output file (``.onnx`` / ``.tflite``) or folder (``saved_model``). Written
            beside and renamed into place, so a failed export leaves no partial file.
        format: ``"onnx"``, ``"litert"`` or ``"saved_model"``.
        quantize: ``"none"``; ``"float16"`` (LiteRT: float16 weights, float compute);
            ``"int8"`` (LiteRT: int8 weights and activations calibrated on
            ``representative_images``, float32 inputs and outputs; operations without an
            int8 kernel stay float). ONNX and SavedModel take ``"none"`` only.
        representative_images: ``uint8 (H, W, 3)`` images for int8 calibration (a few
            dozen typical ones; required for ``"int8"``).
        class_names: names by class id; required for a Keras model, taken from the
            graph for a SavedModel.
        confidence_threshold, iou_threshold, max_detections: a YOLOv8 Keras model's NMS
            settings, stored in the metadata for the caller (default: the model's own
            decoder's).
        proposals: a proposal-taking (R-CNN) SavedModel's selective-search settings,
            keyword arguments of :func:`kdet.models.rcnn.selective_search.selective_search`
            (default ``{"mode": "fast", "max_side": 300}``), stored in the metadata for
            :class:`kdet.deploy.Runtime`.

    Raises:
        DeployError: naming the model and format when the model cannot take the format
            (in-graph NMS to ONNX or LiteRT; R-CNN's ``CropAndResize`` to LiteRT; an
            unknown Keras model).
        ValueError: for bad arguments.
    """
    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}. Received: {format=}")
    if quantize not in QUANTIZE:
        raise ValueError(f"quantize must be one of {QUANTIZE}. Received: {quantize=}")
    if quantize != "none" and format != "litert":
        raise ValueError(
            f"quantize={quantize!r} is implemented for format='litert' only. Received: {format=}"
        )
    images = list(representative_images or [])
    if quantize == "int8" and not images:
        raise ValueError("quantize='int8' needs representative_images (uint8 HxWx3 arrays)")
    if isinstance(model, str | os.PathLike):
        source = _ContractSource(model, proposals)
    else:
        if proposals is not None:
            raise ValueError(
                "proposals applies to a proposal-taking SavedModel, not a Keras model. "
                f"Received: {proposals=}"
            )
        source = _RawSource(
            model,
            class_names,
            confidence_threshold=confidence_threshold,
            iou_threshold=iou_threshold,
            max_detections=max_detections,
        )
    path = Path(path)
    if format in SUFFIXES and path.suffix != SUFFIXES[format]:
        raise ValueError(
            f"a {format} artifact's file name must end in {SUFFIXES[format]}. Received: {path}"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    if format == "onnx":
        atomic.write_bytes(path, source.to_onnx(path))
    elif format == "litert":
        data = source.to_litert(quantize, images)
        # The flatbuffer has no length or checksum of its own, and LiteRT's Python
        # interpreter does not verify it (a truncated file can crash the process), so the
        # sidecar records both for Runtime to check first.
        metadata = {
            **source.metadata,
            "size_bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        atomic.write_bytes(sidecar_path(path), json.dumps(metadata, indent=2).encode())
        atomic.write_bytes(path, data)
    else:
        atomic.replace_folder(path, source.to_saved_model)
    return str(path)


def _onnx_with_metadata(model_proto, metadata: dict) -> bytes:
    entry = model_proto.metadata_props.add()
    entry.key = METADATA_KEY
    entry.value = json.dumps(metadata)
    return model_proto.SerializeToString()


class _ContractSource:
    """A kdet serving SavedModel's ``detect_image`` signature."""

    def __init__(self, folder, proposals: Mapping | None = None):
        from kdet.detector import load_contract

        self.folder = str(folder)
        self.loaded, self.signature = load_contract(self.folder)
        self.takes_proposals = "proposals" in self.signature.structured_input_signature[1]
        self.metadata = {
            "kind": "contract",
            "class_names": contract_class_names(self.signature, self.folder),
            "source": self.folder,
        }
        if self.takes_proposals:
            self.metadata["proposals"] = proposal_settings(proposals)
        elif proposals is not None:
            raise ValueError(
                f"{self.folder}: takes no proposals (not an R-CNN model). Received: {proposals=}"
            )

    def _function(self):
        import tensorflow as tf

        signature = self.signature
        image = tf.TensorSpec([None, None, 3], tf.uint8, name="image")
        if self.takes_proposals:

            @tf.function(
                input_signature=[image, tf.TensorSpec([None, 4], tf.float32, name="proposals")]
            )
            def detect_proposals(image, proposals):
                out = signature(image=image, proposals=proposals)
                return {key: out[key] for key in CONTRACT_OUTPUTS}

            return detect_proposals

        @tf.function(input_signature=[image])
        def detect(image):
            out = signature(image=image)
            return {key: out[key] for key in CONTRACT_OUTPUTS}

        return detect

    def to_onnx(self, path: Path) -> bytes:
        import tf2onnx

        function = frozen_function(self._function())
        try:
            proto, _ = tf2onnx.convert.from_function(
                function, input_signature=function.input_signature, opset=ONNX_OPSET
            )
            unsupported = _unsupported_onnx_nodes(proto)
        except ValueError as err:  # e.g. "Graph has cycles" from NMS while loops
            proto, unsupported = None, {f"while loops tf2onnx cannot order ({err})"}
        if unsupported:
            raise DeployError(
                self.folder,
                f"format 'onnx' cannot hold this model's graph: {sorted(unsupported)} have no "
                f"ONNX equivalent (KerasCV's in-graph NMS, "
                "non_max_suppression_padded, uses Bitcast/BitwiseAnd). Export the Keras model "
                "instead (kdet.deploy.export(keras_model, ..., class_names=...)): its raw "
                "graph leaves NMS to kdet.deploy.Runtime",
            )
        return _onnx_with_metadata(proto, self.metadata)

    def to_litert(self, quantize: str, images: list) -> bytes:
        return _to_litert(
            self._function(), self.folder, quantize, lambda: ({"image": i} for i in images)
        )

    def to_saved_model(self, staging: str) -> None:
        shutil.copytree(self.folder, staging, dirs_exist_ok=True)
        target = Path(staging) / SAVED_MODEL_METADATA
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(self.metadata, indent=2))


def _unsupported_onnx_nodes(proto) -> set[str]:
    """Op types tf2onnx left unconverted (it keeps them as nodes ONNX does not define)."""
    import onnx

    return {
        node.op_type
        for node in proto.graph.node
        if node.domain in ("", "ai.onnx") and not onnx.defs.has(node.op_type)
    }


def frozen_function(function):
    """``function`` (a ``tf.function`` with an input signature returning a dict) with its
    variables folded into constants, as a new ``tf.function`` with the same signature."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    concrete = function.get_concrete_function()
    frozen = convert_variables_to_constants_v2(concrete, lower_control_flow=False)
    keys = sorted(concrete.structured_outputs)  # the order of nest.flatten

    @tf.function(input_signature=function.input_signature)
    def call(*args):
        out = frozen(*args)
        return out if isinstance(out, dict) else dict(zip(keys, out, strict=True))

    return call


def _to_litert(function, where: str, quantize: str, dataset: Callable) -> bytes:
    """Freeze ``function``'s variables into constants, save it as a variable-free SavedModel
    and convert that with TFLite builtin ops only. Converting
    a SavedModel with variables kept Keras 3 variables as uninitialised ``VAR_HANDLE`` ops:
    the model computed NaN."""
    import tensorflow as tf

    module = tf.Module()
    module.detect = frozen_function(function)
    with tempfile.TemporaryDirectory(prefix="kdet-deploy-") as folder:
        tf.saved_model.save(
            module,
            folder,
            signatures={"detect": module.detect},
            # KerasCV layers' custom gradients capture constants the saver rejects.
            options=tf.saved_model.SaveOptions(experimental_custom_gradients=False),
        )
        converter = tf.lite.TFLiteConverter.from_saved_model(folder, signature_keys=["detect"])
        # Builtins only: Select TF (Flex) ops need a TensorFlow-linked interpreter that
        # neither the ai_edge_litert wheel nor tf.lite.Interpreter here provide.
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        _set_quantization(converter, quantize, dataset)
        try:
            return converter.convert()
        except Exception as err:  # the converter raises several unrelated types
            flex = re.search(r"TF Select ops: ([^\n]+)", str(err))
            needs = f"needs the Select TF ops {flex.group(1)}" if flex else "does not convert"
            raise DeployError(
                where,
                f"format 'litert' (quantize={quantize!r}) cannot hold this model's graph "
                f"with TFLite builtin ops: it {needs} (KerasCV's in-graph NMS and "
                "dynamic-shape convolutions, R-CNN's CropAndResize). For a YOLOv8 or "
                "single-box model, export the Keras model instead, whose raw graph leaves "
                f"resizing and NMS to kdet.deploy.Runtime. Converter: {err}",
            ) from err


def _set_quantization(converter, quantize: str, dataset: Callable) -> None:
    import tensorflow as tf

    if quantize == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantize == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = dataset


class _RawSource:
    """A Keras model's network + box decoding at its fixed input size."""

    def __init__(self, model, class_names, **nms):
        import keras

        if not isinstance(model, keras.Model):
            raise DeployError(
                repr(model), "is neither a SavedModel folder nor a Keras model; cannot export"
            )
        self.model = model
        self.name = model.name
        if class_names is None:
            raise ValueError(f"class_names is required to export Keras model {model.name!r}")
        self.input_size = tuple(int(v) for v in model.input_shape[1:3])
        if None in self.input_size or len(self.input_size) != 2:
            raise DeployError(
                model.name,
                f"needs a fixed input size to export a raw graph. Received: "
                f"input_shape={model.input_shape}",
            )
        if type(model).__name__ == "YOLOV8Detector":
            from kdet.models.yolov8.export import raw_detector  # keras-cv stays in yolov8/

            self.raw_fn, num_classes, extra = raw_detector(model, **nms)
        elif type(model).__name__ == "RetinaNetObjectDetector":
            from kdet.models.retinanet.evaluate import raw_detector

            self.raw_fn, num_classes, extra = raw_detector(model, **nms)
        elif _single_box_outputs(model):
            self.raw_fn, num_classes, extra = _single_box_raw(model)
        else:
            raise DeployError(
                model.name,
                "is not a model kdet.deploy can export as a raw graph (a KerasCV "
                "YOLOV8Detector or a single-box model with a 'bounding_box' output); export "
                "its family's SavedModel and pass that folder instead",
            )
        if num_classes is not None and len(class_names) != num_classes:
            raise ValueError(
                f"class_names has {len(class_names)} names for model {model.name!r} with "
                f"{num_classes} classes. Received: {class_names=}"
            )
        self.metadata = {
            "kind": "raw",
            "class_names": list(class_names),
            "input_size": list(self.input_size),
            "source": model.name,
            **extra,
        }

    def _function(self):
        import tensorflow as tf

        height, width = self.input_size
        raw_fn = self.raw_fn
        spec = tf.TensorSpec([1, height, width, 3], tf.float32, name="images")

        @tf.function(input_signature=[spec])
        def raw(images):
            return raw_fn(images)

        return raw

    def to_onnx(self, path: Path) -> bytes:
        import tf2onnx

        function = self._function()
        try:
            proto, _ = tf2onnx.convert.from_function(
                function, input_signature=function.input_signature, opset=ONNX_OPSET
            )
        except Exception as err:
            raise DeployError(self.name, f"format 'onnx' failed: {err}") from err
        return _onnx_with_metadata(proto, self.metadata)

    def to_litert(self, quantize: str, images: list) -> bytes:
        resize = self.metadata["resize"]

        def dataset():
            for image in images:
                yield {"images": fit_image(image, self.input_size, resize)[0]}

        return _to_litert(self._function(), self.name, quantize, dataset)

    def to_saved_model(self, staging: str) -> None:
        import tensorflow as tf

        module = tf.Module()
        module.model = self.model
        module.raw = self._function()
        tf.saved_model.save(module, staging, signatures={"raw": module.raw})
        target = Path(staging) / SAVED_MODEL_METADATA
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(self.metadata, indent=2))


def _single_box_outputs(model) -> bool:
    outputs = model.output
    return isinstance(outputs, dict) and "bounding_box" in outputs


def _single_box_raw(model):
    import tensorflow as tf

    height, width = (int(v) for v in model.input_shape[1:3])
    has_classes = "class_label" in model.output

    def raw(images):
        outputs = model(images, training=False)
        x1, y1, x2, y2 = tf.unstack(tf.cast(outputs["bounding_box"], tf.float32), axis=-1)
        relative = tf.stack(
            [tf.minimum(x1, x2), tf.minimum(y1, y2), tf.maximum(x1, x2), tf.maximum(y1, y2)],
            axis=-1,
        )
        boxes = relative * tf.constant([width, height, width, height], tf.float32)
        if has_classes:
            scores = tf.cast(outputs["class_label"], tf.float32)
        else:
            scores = tf.ones([1, 1], tf.float32)
        return {"boxes": boxes, "scores": scores}

    num_classes = int(model.output["class_label"].shape[-1]) if has_classes else None
    return raw, num_classes, {"resize": "stretch", "nms": False}


def proposal_settings(proposals: Mapping | None) -> dict:
    """Selective-search settings for the metadata: ``proposals`` over the serving defaults.

    Example:
        >>> proposal_settings({"mode": "single"})
        {'mode': 'single', 'max_side': 300}
    """
    from kdet.models.rcnn.selective_search import DEFAULT_PROPOSALS, MODES

    settings = {**DEFAULT_PROPOSALS, **(proposals or {})}
    unknown = sorted(set(settings) - {"mode", "max_side", "max_proposals", "seed"})
    if unknown or settings["mode"] not in MODES:
        raise ValueError(
            f"proposals: keys among mode ({', '.join(MODES)}), max_side, max_proposals, "
            f"seed. Received: {proposals=}"
        )
    return settings


def contract_class_names(signature, where) -> list[str]:
    """The class-name table a kdet serving signature gathers ``class_names`` from.

    :class:`kdet.export.DetectorServingModule` keeps the names in a string constant that the
    traced signatures capture; a loaded SavedModel exposes it among the signature's captured
    inputs (the only rank-1 string capture).
    """
    import tensorflow as tf

    tables = [t for t in signature.captured_inputs if t.dtype == tf.string and t.shape.rank == 1]
    if len(tables) != 1:
        raise DeployError(
            where,
            f"cannot find the class-name table of the serving contract (found {len(tables)} "
            "rank-1 string constants captured by 'detect_image')",
        )
    return [name.decode() for name in tables[0].numpy().tolist()]
