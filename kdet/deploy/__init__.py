"""Deploy a kdet detector anywhere: ONNX, LiteRT (TFLite) and SavedModel artifacts, one
runtime wrapper for all of them, and a latency benchmark.

Example:
    >>> from kdet import deploy
    >>> deploy.export("saved_model", "model.tflite", format="litert")  # doctest: +SKIP
    >>> deploy.Runtime("model.tflite")(image)["class_names"]  # doctest: +SKIP
"""

from kdet.deploy.benchmark import benchmark, format_table
from kdet.deploy.export import DeployError, export
from kdet.deploy.runtime import Runtime

__all__ = ["DeployError", "Runtime", "benchmark", "export", "format_table"]
