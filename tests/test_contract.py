"""The serving contract of every exported family, checked from a process with TensorFlow only.

Each family adds one ``ContractCase`` to ``CASES``: a function that exports a tiny model of
the family (``weights=None``, 64x64 inputs, no training needed) to a given folder and returns
its class names. Models that take region proposals (R-CNN style: both signatures have a
second input ``proposals``, float32 ``(N, 4)`` xyxy pixels) are called with three boxes.
"""

import dataclasses
import importlib
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image


@dataclasses.dataclass(frozen=True)
class ContractCase:
    """``export``: ``"module:function"``, ``function(path) -> class names``;
    ``min_detections``: what an untrained model is sure to return on any image;
    ``takes_proposals``: the signatures have the extra ``proposals`` input."""

    name: str
    export: str
    min_detections: int = 0
    takes_proposals: bool = False


CASES = [
    ContractCase("toy", "tests.toy_detector:export_toy_detector_with_names", min_detections=2),
    ContractCase(
        "toy_proposals",
        "tests.toy_detector:export_toy_proposal_detector_with_names",
        min_detections=1,
        takes_proposals=True,
    ),
]

CHECK = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import tensorflow as tf

    path, jpeg = sys.argv[1], sys.argv[2]
    names, min_detections = json.loads(sys.argv[3]), int(sys.argv[4])
    takes_proposals = sys.argv[5] == "proposals"
    served = tf.saved_model.load(path)

    def extra(height, width):
        # three proposals inside a (height, width) image, when the model takes them
        if not takes_proposals:
            return {}
        boxes = [[0, 0, width, height], [1, 2, width / 2, height / 3], [5, 5, 20, 30]]
        return {"proposals": tf.constant(boxes, tf.float32)}
    assert {"serving_default", "detect_image"} <= set(served.signatures), served.signatures

    def check(out, height, width):
        n = int(out["num_detections"])
        boxes, scores = out["boxes"].numpy(), out["scores"].numpy()
        classes, got_names = out["classes"].numpy(), out["class_names"].numpy()
        assert n >= min_detections, n
        assert boxes.shape == (n, 4) and boxes.dtype == np.float32, boxes
        assert scores.shape == (n,) and classes.shape == (n,) and got_names.shape == (n,)
        assert classes.dtype == np.int32 and scores.dtype == np.float32
        assert np.all((scores >= 0) & (scores <= 1)), scores
        assert np.all((classes >= 0) & (classes < len(names))), classes
        assert [x.decode() for x in got_names] == [names[c] for c in classes]
        tol = 1e-3 * max(height, width)
        x1, y1, x2, y2 = boxes.T
        assert np.all((-tol <= x1) & (x1 <= x2 + tol) & (x2 <= width + tol)), (boxes, width)
        assert np.all((-tol <= y1) & (y1 <= y2 + tol) & (y2 <= height + tol)), (boxes, height)
        return boxes

    data = tf.io.read_file(jpeg)
    height, width = tf.io.decode_jpeg(data).shape[:2]
    out = served.signatures["serving_default"](image_bytes=data, **extra(height, width))
    check(out, height, width)
    rng = np.random.default_rng(0)
    image = tf.constant(rng.integers(0, 256, (97, 41, 3), dtype=np.uint8))
    boxes = check(served.signatures["detect_image"](image=image, **extra(97, 41)), 97, 41)
    assert "kdet" not in sys.modules and "keras_cv" not in sys.modules
    print(json.dumps({"ok": True, "boxes": boxes.tolist()}))
    """
)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_exported_model_serves_plain_tensorflow(case, tmp_path):
    module, _, function = case.export.partition(":")
    path = tmp_path / "saved_model"
    class_names = getattr(importlib.import_module(module), function)(path)
    jpeg = tmp_path / "image.jpg"
    noise = np.random.default_rng(1).integers(0, 256, (45, 130, 3), dtype=np.uint8)
    Image.fromarray(noise).save(jpeg)
    result = subprocess.run(
        [sys.executable, "-c", CHECK, str(path), str(jpeg)]
        + [json.dumps(list(class_names)), str(case.min_detections)]
        + ["proposals" if case.takes_proposals else "image"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    known = {  # the toys' boxes: whole image + top-left quarter; the largest proposal
        "toy": [[0, 0, 41, 97], [0, 0, 20.5, 48.5]],
        "toy_proposals": [[0, 0, 41, 97]],
    }
    if case.name in known:
        assert answer["boxes"] == known[case.name]
