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
    min_detections: int
    takes_proposals: bool = False


CASES = [
    ContractCase("toy", "tests.toy_detector:export_toy_detector_with_names", min_detections=2),
    ContractCase(
        "toy_proposals",
        "tests.toy_detector:export_toy_proposal_detector_with_names",
        min_detections=1,
        takes_proposals=True,
    ),
    # score threshold 0: every proposal / window / anchor's best object class is kept
    ContractCase("rcnn", "tests.contract_exporters:export_rcnn", 1, takes_proposals=True),
    ContractCase("fast_rcnn", "tests.contract_exporters:export_fast_rcnn", 1, takes_proposals=True),
    ContractCase("sliding_window", "tests.contract_exporters:export_sliding_window", 1),
    ContractCase("yolov8", "tests.contract_exporters:export_yolov8", 1),
    ContractCase(
        "bbox_regressor",
        "tests.contract_exporters:export_bbox_regressor",
        1,
    ),
    ContractCase(
        "multiclass",
        "tests.contract_exporters:export_multiclass",
        1,
    ),
]

CHECK = textwrap.dedent(
    """
    import json, sys, traceback
    import numpy as np
    import tensorflow as tf

    def extra(takes_proposals, height, width):
        # three proposals inside a (height, width) image, when the model takes them
        if not takes_proposals:
            return {}
        boxes = [[0, 0, width, height], [1, 2, width / 2, height / 3], [5, 5, 20, 30]]
        return {"proposals": tf.constant(boxes, tf.float32)}

    def check(out, height, width, names, min_detections):
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

    def verify(path, jpeg, names, min_detections, takes_proposals):
        served = tf.saved_model.load(path)
        assert {"serving_default", "detect_image"} <= set(served.signatures)
        data = tf.io.read_file(jpeg)
        height, width = tf.io.decode_jpeg(data).shape[:2]
        feeds = extra(takes_proposals, height, width)
        out = served.signatures["serving_default"](image_bytes=data, **feeds)
        check(out, height, width, names, min_detections)
        rng = np.random.default_rng(0)
        image = tf.constant(rng.integers(0, 256, (97, 41, 3), dtype=np.uint8))
        out = served.signatures["detect_image"](image=image, **extra(takes_proposals, 97, 41))
        return check(out, 97, 41, names, min_detections).tolist()

    jpeg, cases = sys.argv[1], json.loads(sys.argv[2])
    verdicts = {}
    for name, case in cases.items():
        try:
            verdicts[name] = {"boxes": verify(jpeg=jpeg, **case)}
        except Exception:
            verdicts[name] = {"error": traceback.format_exc()[-3000:]}
    verdicts["imported kdet or keras_cv"] = sorted({"kdet", "keras_cv"} & set(sys.modules))
    print(json.dumps(verdicts))
    """
)


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory):
    """Export every case, then check them all in one process that imports only TensorFlow
    (one TensorFlow start-up instead of one per family)."""
    folder = tmp_path_factory.mktemp("contract")
    jpeg = folder / "image.jpg"
    noise = np.random.default_rng(1).integers(0, 256, (45, 130, 3), dtype=np.uint8)
    Image.fromarray(noise).save(jpeg)
    cases = {}
    for case in CASES:
        module, _, function = case.export.partition(":")
        path = folder / case.name
        names = getattr(importlib.import_module(module), function)(path)
        cases[case.name] = {
            "path": str(path),
            "names": list(names),
            "min_detections": case.min_detections,
            "takes_proposals": case.takes_proposals,
        }
    result = subprocess.run(
        [sys.executable, "-c", CHECK, str(jpeg), json.dumps(cases)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    verdicts = json.loads(result.stdout.strip().splitlines()[-1])
    assert verdicts.pop("imported kdet or keras_cv") == []
    return verdicts


@pytest.mark.parametrize(
    "case",
    [pytest.param(case, id=case.name) for case in CASES],
)
def test_exported_model_serves_plain_tensorflow(case, verdicts):
    verdict = verdicts[case.name]
    assert "error" not in verdict, verdict.get("error")
    known = {  # the toys' boxes: whole image + top-left quarter; the largest proposal
        "toy": [[0, 0, 41, 97], [0, 0, 20.5, 48.5]],
        "toy_proposals": [[0, 0, 41, 97]],
    }
    if case.name in known:
        assert verdict["boxes"] == known[case.name]
