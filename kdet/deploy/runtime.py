"""Run an artifact of :func:`kdet.deploy.export` on one ``uint8`` image, whatever its format.

``Runtime(path)`` picks the engine by file type: ``.onnx`` -> ONNX Runtime, ``.tflite`` ->
``ai_edge_litert`` (or ``tf.lite.Interpreter`` for graphs with Select TF ops, which the
stand-alone LiteRT wheel cannot run), a folder -> TensorFlow SavedModel. Calling it does the
steps the artifact's graph left to the caller (see :mod:`kdet.deploy.postprocess`; for
R-CNN / Fast R-CNN, selective search with the metadata's ``proposals`` settings, see
:mod:`kdet.models.rcnn.selective_search`) and returns the SavedModel contract's outputs as
NumPy arrays.

Example:
    >>> runtime = Runtime("yolo.onnx")  # doctest: +SKIP
    >>> out = runtime(image)  # uint8 (H, W, 3), RGB  # doctest: +SKIP
    >>> out["boxes"], out["scores"], out["classes"], out["class_names"]  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from kdet.deploy.export import (
    CONTRACT_OUTPUTS,
    METADATA_KEY,
    SAVED_MODEL_METADATA,
    DeployError,
    contract_class_names,
    proposal_settings,
    sidecar_path,
)
from kdet.deploy.postprocess import boxes_to_image, fit_image, select


class Runtime:
    """One exported detector, callable on ``uint8 (H, W, 3)`` RGB images.

    Args:
        path: an ``.onnx`` file, a ``.tflite`` file (with its ``NAME.classes.json``) or a
            SavedModel folder (a kdet serving SavedModel or a ``saved_model`` export).
        num_threads: intra-op threads for ONNX Runtime and LiteRT (default: the engine's
            own default). TensorFlow's thread pool is process-wide; it is left as it is.
        proposals: for a proposal-taking (R-CNN) artifact, selective-search settings that
            replace those of its metadata (a contract SavedModel has none: default
            ``{"mode": "fast", "max_side": 300}``, as :class:`kdet.predict.Detector`).

    Attributes:
        format: ``"onnx"``, ``"litert"`` or ``"saved_model"``.
        metadata: the artifact's kdet metadata (``class_names``, ``kind``, ...).

    Raises:
        DeployError: naming the file and the problem (missing, truncated or corrupt
            file, missing metadata, unknown file type).
        ValueError: ``proposals`` for an artifact that takes none.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        num_threads: int | None = None,
        proposals: dict | None = None,
    ):
        self.path = Path(path)
        self.num_threads = num_threads
        if not self.path.exists():
            raise DeployError(self.path, "no such file or folder")
        if self.path.is_dir():
            self.format = "saved_model"
            self._load_saved_model()
        elif self.path.suffix == ".onnx":
            self.format = "onnx"
            self._load_onnx()
        elif self.path.suffix == ".tflite":
            self.format = "litert"
            self._load_litert()
        else:
            raise DeployError(
                self.path, "unknown artifact type (expected .onnx, .tflite or a folder)"
            )
        self.class_names = list(self.metadata["class_names"])
        if proposals is not None:
            if "proposals" not in self.metadata:
                raise ValueError(f"{self.path}: takes no proposals. Received: {proposals=}")
            self.metadata["proposals"] = proposal_settings(proposals)

    # Loading -----------------------------------------------------------------------------

    def _check_metadata(self, metadata, where) -> dict:
        if not isinstance(metadata, dict) or "class_names" not in metadata:
            raise DeployError(where, "kdet metadata lacks 'class_names'")
        if metadata.get("kind") not in ("contract", "raw"):
            raise DeployError(where, f"kdet metadata has unknown kind {metadata.get('kind')!r}")
        return metadata

    def _load_onnx(self) -> None:
        import onnx
        import onnxruntime as ort

        try:
            proto = onnx.load(str(self.path), load_external_data=False)
            onnx.checker.check_model(proto)
        except Exception as err:
            raise DeployError(
                self.path, f"not a readable ONNX model (corrupt or truncated?): {err}"
            ) from err
        props = {p.key: p.value for p in proto.metadata_props}
        if METADATA_KEY not in props:
            raise DeployError(
                self.path, f"ONNX metadata_props lack {METADATA_KEY!r} (not a kdet export)"
            )
        try:
            metadata = json.loads(props[METADATA_KEY])
        except json.JSONDecodeError as err:
            raise DeployError(self.path, f"kdet metadata is not JSON: {err}") from err
        self.metadata = self._check_metadata(metadata, self.path)
        options = ort.SessionOptions()
        if self.num_threads:
            options.intra_op_num_threads = self.num_threads
            options.inter_op_num_threads = 1
        try:
            session = ort.InferenceSession(
                proto.SerializeToString(), options, providers=["CPUExecutionProvider"]
            )
        except Exception as err:
            raise DeployError(self.path, f"ONNX Runtime cannot load it: {err}") from err
        names = [o.name for o in session.get_outputs()]

        def run(**feed):
            return dict(zip(names, session.run(None, feed), strict=True))

        self._run = run

    def _load_litert(self) -> None:
        sidecar = sidecar_path(self.path)
        if not sidecar.exists():
            raise DeployError(self.path, f"missing its metadata file {sidecar.name}")
        try:
            metadata = json.loads(sidecar.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise DeployError(sidecar, f"unreadable kdet metadata: {err}") from err
        self.metadata = self._check_metadata(metadata, sidecar)
        data = self.path.read_bytes()
        # A flatbuffer model carries the identifier "TFL3" at bytes 4-8.
        if len(data) < 8 or data[4:8] != b"TFL3":
            raise DeployError(self.path, "not a TFLite flatbuffer (corrupt or truncated)")
        # LiteRT does not verify the flatbuffer (a truncated one can crash the process):
        # check it against the size and hash export wrote.
        size = metadata.get("size_bytes")
        if size is not None and size != len(data):
            raise DeployError(
                self.path, f"truncated or altered: {len(data)} bytes, {sidecar.name} says {size}"
            )
        digest = metadata.get("sha256")
        if digest is not None and digest != hashlib.sha256(data).hexdigest():
            raise DeployError(self.path, f"corrupt: its sha256 differs from {sidecar.name}'s")
        interpreter = self._interpreter()
        signatures = interpreter.get_signature_list()
        if len(signatures) != 1:  # pragma: no cover - kdet writes one
            raise DeployError(self.path, f"expected one signature, found {sorted(signatures)}")
        (signature,) = signatures
        self._interpreter_ref = interpreter
        self._run = interpreter.get_signature_runner(signature)

    def _interpreter(self):
        """``ai_edge_litert``'s interpreter, else TensorFlow's (which links the Flex
        delegate for Select TF ops); each is tried with one call on a blank input, because
        a missing Flex op only shows when the graph first runs."""
        errors = []
        for engine in ("ai_edge_litert", "tf.lite"):
            try:
                if engine == "ai_edge_litert":
                    from ai_edge_litert.interpreter import Interpreter
                else:
                    import tensorflow as tf

                    Interpreter = tf.lite.Interpreter  # noqa: N806
                interpreter = Interpreter(model_path=str(self.path), num_threads=self.num_threads)
                self._try_once(interpreter)
                self.engine = engine
                return interpreter
            except Exception as err:  # e.g. Flex (Select TF) ops, not in the stand-alone wheel
                errors.append(f"{engine}: {err}")
        raise DeployError(self.path, "cannot load the TFLite model: " + "; ".join(errors))

    def _try_once(self, interpreter) -> None:
        (signature,) = interpreter.get_signature_list()
        runner = interpreter.get_signature_runner(signature)
        (key,) = interpreter.get_signature_list()[signature]["inputs"]
        if self.metadata["kind"] == "contract":
            runner(**{key: np.zeros((32, 32, 3), np.uint8)})
        else:
            height, width = self.metadata["input_size"]
            runner(**{key: np.zeros((1, height, width, 3), np.float32)})

    def _load_saved_model(self) -> None:
        import tensorflow as tf

        if not (self.path / "saved_model.pb").exists():
            raise DeployError(self.path, "not a SavedModel folder (no saved_model.pb)")
        try:
            loaded = tf.saved_model.load(str(self.path))
        except Exception as err:
            raise DeployError(self.path, f"cannot load the SavedModel: {err}") from err
        extra = self.path / SAVED_MODEL_METADATA
        if "detect_image" in loaded.signatures:
            signature = loaded.signatures["detect_image"]
            names = contract_class_names(signature, self.path)
            self.metadata = {"kind": "contract", "class_names": names}
            if "proposals" in signature.structured_input_signature[1]:
                stored = json.loads(extra.read_text()) if extra.exists() else {}
                self.metadata["proposals"] = proposal_settings(stored.get("proposals"))
        elif "raw" in loaded.signatures and extra.exists():
            self.metadata = self._check_metadata(json.loads(extra.read_text()), extra)
            signature = loaded.signatures["raw"]
        else:
            raise DeployError(
                self.path,
                "neither a kdet serving SavedModel (no 'detect_image' signature) nor a "
                f"kdet.deploy raw export (no 'raw' signature with {SAVED_MODEL_METADATA})",
            )
        self._loaded = loaded

        def run(**feed):
            return {
                k: v.numpy()
                for k, v in signature(**{k: tf.constant(v) for k, v in feed.items()}).items()
            }

        self._run = run

    # Calling -----------------------------------------------------------------------------

    def __call__(self, image: np.ndarray) -> dict:
        """``uint8 (H, W, 3)`` RGB -> ``{"boxes" (N, 4) xyxy image pixels, "scores" (N,),
        "classes" (N,) int32, "class_names" (N,) str}``."""
        image = np.asarray(image)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or not image.size:
            raise ValueError(
                "image must be a non-empty uint8 (height, width, 3) array. Received: "
                f"dtype {image.dtype}, shape {image.shape}"
            )
        metadata = self.metadata
        if metadata["kind"] == "contract":
            feed = {"image": image}
            if "proposals" in metadata:
                feed["proposals"] = self.proposals(image)
            out = self._run(**feed)
            boxes, scores, classes = (np.asarray(out[k]) for k in CONTRACT_OUTPUTS)
            boxes = boxes.astype(np.float32).reshape(-1, 4)
        else:
            batch, geometry = fit_image(image, metadata["input_size"], metadata["resize"])
            out = self._run(images=batch)
            boxes, scores, classes = select(
                out["boxes"],
                out["scores"],
                nms=metadata["nms"],
                confidence_threshold=metadata.get("confidence_threshold", 0.0),
                iou_threshold=metadata.get("iou_threshold", 0.5),
                max_detections=metadata.get("max_detections", 100),
            )
            boxes = boxes_to_image(boxes, geometry)
        classes = np.asarray(classes, np.int32).reshape(-1)
        return {
            "boxes": boxes,
            "scores": np.asarray(scores, np.float32).reshape(-1),
            "classes": classes,
            "class_names": np.array([self.class_names[c] for c in classes], dtype=object),
        }

    def proposals(self, image: np.ndarray) -> np.ndarray:
        """Selective-search proposals of the RGB ``image`` with the metadata's settings, as
        :class:`kdet.predict.Detector` computes them: float32 ``(N, 4)`` ``xyxy`` pixels."""
        import cv2

        from kdet.models.rcnn.selective_search import selective_search

        bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)  # OpenCV's colour strategies assume BGR
        return selective_search(bgr, **self.metadata["proposals"])
