"""The MLflow pyfunc model of every kdet detector, logged as code (MLflow "models from code").

:func:`kdet.serving.log_detector` (SavedModels) and :func:`kdet.deploy.artifacts.log_model`
(ONNX, LiteRT) log this file next to one model artifact, picked by file type:
``saved_model`` (a contract SavedModel folder, run by TensorFlow), ``onnx`` (a
:func:`kdet.deploy.export` ``.onnx`` file, run by ONNX Runtime) or ``litert`` (a ``.tflite``
file, with its ``NAME.classes.json`` as artifact ``metadata``, run by ``ai_edge_litert``).
Two kdet files travel with it as MLflow ``code_paths``, so a served or loaded model needs
no kdet: ``postprocess.py`` (:mod:`kdet.deploy.postprocess`: resize, NMS and box mapping
that a raw ONNX / LiteRT graph leaves to its caller) and ``selective_search.py``
(:mod:`kdet.models.rcnn.selective_search`: R-CNN / Fast R-CNN proposals). It is not meant
to be imported: MLflow executes it when it loads the model.

Input: a DataFrame with a binary column ``image`` holding encoded JPEG/PNG/BMP/GIF bytes
(JSON clients send them base64-encoded, as MLflow does for every binary column).
Output: one row per detection: ``image_index`` (row of the input), ``x1, y1, x2, y2``
(pixels of that image), ``score``, ``class_id``, ``class_name``. Parameter
``score_threshold`` (default 0.0) drops weaker detections. Models that also take
``proposals`` (R-CNN, Fast R-CNN) get OpenCV selective-search proposals computed here, with
the ONNX / LiteRT metadata's ``proposals`` settings, or for a SavedModel the model config's
(``mode``, ``max_side``; default fast, 300).
An image that cannot be decoded (empty, truncated, not an image, too large) fails the
request with MLflow's ``INVALID_PARAMETER_VALUE`` (HTTP 400 from the scoring server) naming
the image's row and the reason, e.g. ``image 2: image_bytes: empty file``.

Example:
    $ curl -s 127.0.0.1:5000/invocations -H 'Content-Type: application/json' -d '{
        "dataframe_split": {"columns": ["image"], "data": [["<base64 JPEG>"]]},
        "params": {"score_threshold": 0.5}}'
    {"predictions": [{"image_index": 0, "x1": 12.0, ..., "class_name": "raccoon"}]}
"""

import base64
import json

import cv2
import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

OUTPUT_COLUMNS = ("image_index", "x1", "y1", "x2", "y2", "score", "class_id", "class_name")


def _decode(data: bytes) -> np.ndarray:
    """Encoded image bytes -> ``uint8 (H, W, 3)`` BGR, as OpenCV decodes them."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError("image bytes are not a decodable image")
    return image


class Detector(mlflow.pyfunc.PythonModel):
    """Runs the logged artifact on each image; see the module docstring."""

    def load_context(self, context):
        artifacts = context.artifacts
        if "saved_model" in artifacts:
            self._load_saved_model(artifacts["saved_model"], context.model_config or {})
        elif "onnx" in artifacts:
            self._load_onnx(artifacts["onnx"])
        else:
            self._load_litert(artifacts["litert"], artifacts["metadata"])

    # The code_paths files import only once MLflow loads the model (it runs this file
    # without them when it logs it), hence the imports inside the loaders.

    def _load_saved_model(self, folder: str, config: dict) -> None:
        import tensorflow as tf
        from selective_search import DEFAULT_PROPOSALS, selective_search

        self._model = tf.saved_model.load(folder)
        serve = self._model.signatures["serving_default"]
        takes_proposals = "proposals" in serve.structured_input_signature[1]
        proposals = {**DEFAULT_PROPOSALS, **(config.get("proposals") or {})}

        def detect(data: bytes):
            inputs = {"image_bytes": tf.constant(data)}
            if takes_proposals:
                inputs["proposals"] = tf.constant(selective_search(_decode(data), **proposals))
            try:
                out = serve(**inputs)
            except tf.errors.InvalidArgumentError as err:  # the graph's checks of the image
                raise ValueError(_reason(err)) from err
            names = [name.decode() for name in out["class_names"].numpy().tolist()]
            return out["boxes"].numpy(), out["scores"].numpy(), out["classes"].numpy(), names

        self._detect = detect

    def _load_onnx(self, path: str) -> None:
        import onnxruntime as ort

        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        metadata = json.loads(session.get_modelmeta().custom_metadata_map["kdet"])
        self._start(metadata, lambda **feed: dict(zip(names, session.run(None, feed), strict=True)))

    def _load_litert(self, path: str, metadata_path: str) -> None:
        from ai_edge_litert.interpreter import Interpreter

        with open(metadata_path) as file:
            metadata = json.load(file)
        self._interpreter = Interpreter(model_path=path)
        (signature,) = self._interpreter.get_signature_list()
        self._start(metadata, self._interpreter.get_signature_runner(signature))

    def _start(self, metadata: dict, run) -> None:
        """Detect with an ONNX / LiteRT graph ``run`` (named inputs -> named outputs),
        doing the steps its metadata says moved to the caller."""
        from postprocess import boxes_to_image, fit_image, select
        from selective_search import selective_search

        class_names = metadata["class_names"]

        def detect(data: bytes):
            bgr = _decode(data)
            image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            if metadata["kind"] == "contract":
                feed = {"image": image}
                if "proposals" in metadata:
                    feed["proposals"] = selective_search(bgr, **metadata["proposals"])
                out = run(**feed)
                boxes, scores, classes = (out[k] for k in ("boxes", "scores", "classes"))
            else:
                batch, geometry = fit_image(image, metadata["input_size"], metadata["resize"])
                out = run(images=batch)
                boxes, scores, classes = select(
                    out["boxes"],
                    out["scores"],
                    nms=metadata["nms"],
                    confidence_threshold=metadata.get("confidence_threshold", 0.0),
                    iou_threshold=metadata.get("iou_threshold", 0.5),
                    max_detections=metadata.get("max_detections", 100),
                )
                boxes = boxes_to_image(boxes, geometry)
            classes = np.asarray(classes, np.int64).reshape(-1)
            names = [class_names[c] for c in classes]
            return np.reshape(boxes, (-1, 4)), np.reshape(scores, -1), classes, names

        self._detect = detect

    def predict(self, context, model_input, params=None):
        score_threshold = float((params or {}).get("score_threshold", 0.0))
        images = model_input["image"] if isinstance(model_input, pd.DataFrame) else model_input
        rows = []
        for index, data in enumerate(images):
            try:
                if isinstance(data, str):  # base64 text from a caller that skipped the schema
                    data = base64.b64decode(data)
                boxes, scores, classes, names = self._detect(bytes(data))
            except (ValueError, TypeError, cv2.error) as err:
                raise MlflowException(
                    f"image {index}: {_reason(err)}", error_code=INVALID_PARAMETER_VALUE
                ) from err
            for box, score, class_id, name in zip(
                np.asarray(boxes, np.float64).tolist(),
                np.asarray(scores, np.float64).tolist(),
                np.asarray(classes).tolist(),
                names,
                strict=True,
            ):
                if score >= score_threshold:
                    rows.append([index, *box, score, class_id, name])
        frame = pd.DataFrame(rows, columns=list(OUTPUT_COLUMNS))
        return frame.astype(
            {"image_index": "int64", "class_id": "int64", "class_name": "str"}
            | {column: "float64" for column in ("x1", "y1", "x2", "y2", "score")}
        )


def _reason(error: Exception) -> str:
    """What was wrong with an input, without TensorFlow's graph trace.

    Example:
        >>> _reason(ValueError("Graph execution error:\\nassertion failed: [image_bytes: empty]"))
        'image_bytes: empty'
    """
    text = str(getattr(error, "message", error))
    skipped = ("Graph execution error", "Detected at node", "<stack traces", "\t", " ")
    lines = [line for line in text.splitlines() if line and not line.startswith(skipped)]
    reason = lines[-1] if lines else type(error).__name__
    return reason.removeprefix("assertion failed: [").removesuffix("]")


mlflow.models.set_model(Detector())
