"""The MLflow pyfunc model of every kdet detector, logged as code (MLflow "models from code").

:func:`kdet.serving.log_detector` logs this file next to the SavedModel, so a served or
loaded model needs MLflow, pandas and TensorFlow only, not kdet. It is not meant to be
imported: MLflow executes it when it loads the model.

Input: a DataFrame with a binary column ``image`` holding encoded JPEG/PNG/BMP/GIF bytes
(JSON clients send them base64-encoded, as MLflow does for every binary column).
Output: one row per detection: ``image_index`` (row of the input), ``x1, y1, x2, y2``
(pixels of that image), ``score``, ``class_id``, ``class_name``. Parameter
``score_threshold`` (default 0.0) drops weaker detections. Models whose signature also takes
``proposals`` (R-CNN, Fast R-CNN) get OpenCV selective-search proposals computed here, with
the model config's ``proposals`` settings (``mode``, ``max_side``; default fast, 300).
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

import cv2
import mlflow
import numpy as np
import pandas as pd
import tensorflow as tf
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

OUTPUT_COLUMNS = ("image_index", "x1", "y1", "x2", "y2", "score", "class_id", "class_name")


class SavedModelDetector(mlflow.pyfunc.PythonModel):
    """Runs the SavedModel artifact ``saved_model``'s ``serving_default`` on each image."""

    def load_context(self, context):
        self._model = tf.saved_model.load(context.artifacts["saved_model"])
        self._serve = self._model.signatures["serving_default"]
        self._takes_proposals = "proposals" in self._serve.structured_input_signature[1]
        options = (context.model_config or {}).get("proposals") or {}
        self._proposals = {"mode": "fast", "max_side": 300, **options}

    def _proposals_for(self, data: bytes) -> tf.Tensor:
        """Selective search as kdet.models.rcnn.proposals does it, written again here because
        a served model must not need kdet: search a copy shrunk to ``max_side``, boxes scaled
        back to the image's pixels as float32 ``xyxy``."""
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError("image bytes are not a decodable image")
        height, width = image.shape[:2]
        factor = min(1.0, self._proposals["max_side"] / max(height, width))
        if factor < 1.0:
            size = (max(1, round(width * factor)), max(1, round(height * factor)))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        search = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
        search.setBaseImage(image)
        {
            "fast": search.switchToSelectiveSearchFast,
            "quality": search.switchToSelectiveSearchQuality,
            "single": search.switchToSingleStrategy,
        }[self._proposals["mode"]]()
        rects = np.asarray(search.process(), np.float32).reshape(-1, 4)
        boxes = np.concatenate([rects[:, :2], rects[:, :2] + rects[:, 2:]], axis=1) / factor
        return tf.constant(np.minimum(boxes, [width, height, width, height]).astype(np.float32))

    def predict(self, context, model_input, params=None):
        score_threshold = float((params or {}).get("score_threshold", 0.0))
        images = model_input["image"] if isinstance(model_input, pd.DataFrame) else model_input
        rows = []
        for index, data in enumerate(images):
            try:
                if isinstance(data, str):  # base64 text from a caller that skipped the schema
                    data = base64.b64decode(data)
                inputs = {"image_bytes": tf.constant(bytes(data))}
                if self._takes_proposals:
                    inputs["proposals"] = self._proposals_for(bytes(data))
                out = self._serve(**inputs)
            except (tf.errors.InvalidArgumentError, ValueError, TypeError) as err:
                raise MlflowException(
                    f"image {index}: {_reason(err)}", error_code=INVALID_PARAMETER_VALUE
                ) from err
            for box, score, class_id, name in zip(
                out["boxes"].numpy().tolist(),
                out["scores"].numpy().tolist(),
                out["classes"].numpy().tolist(),
                out["class_names"].numpy().tolist(),
                strict=True,
            ):
                if score >= score_threshold:
                    rows.append([index, *box, score, class_id, name.decode()])
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


mlflow.models.set_model(SavedModelDetector())
