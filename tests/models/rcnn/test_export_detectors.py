"""SavedModels of the R-CNN family load and run in a process that imports only TensorFlow."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from kdet.export import export_detector, export_proposal_detector
from kdet.models import get_model
from kdet.models.rcnn.detector import RCNNDetector
from kdet.models.rcnn.fast_rcnn import FastRCNNDetector
from kdet.models.sliding_window import SlidingWindowDetector
from tests.models.rcnn.conftest import square_image

PROPOSALS = np.array([[16, 20, 44, 52], [0, 0, 64, 64], [10, 10, 30, 30]], np.float32)


def run_plain_tensorflow(script: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True
    )
    assert result.stdout.strip().endswith("ok"), result.stderr[-3000:]
    return result.stdout


@pytest.mark.parametrize("family", ["rcnn", "fast_rcnn"])
def test_proposal_detector_round_trip(tmp_path, family):
    if family == "rcnn":
        model = get_model("rcnn_classifier", backbone="small_cnn", input_size=32)
        detector = RCNNDetector(model, score_threshold=0.0, iou_threshold=0.99)
    else:
        model = get_model("fast_rcnn", backbone="small_cnn", image_size=64, pool_size=3)
        detector = FastRCNNDetector(model, score_threshold=0.0, iou_threshold=0.99)
    image = square_image()
    expected = {k: v.numpy() for k, v in detector(image, PROPOSALS).items()}
    path = export_proposal_detector(tmp_path / "sm", detector.detect_eager, ["square"], model)
    Image.fromarray(image).save(tmp_path / "a.png")
    np.savez(tmp_path / "io.npz", image=image, proposals=PROPOSALS, **expected)
    run_plain_tensorflow(
        f"""
        import sys, numpy as np, tensorflow as tf
        io = np.load({str(tmp_path / "io.npz")!r})
        served = tf.saved_model.load({path!r})
        out = served.signatures["detect_image"](
            image=tf.constant(io["image"]), proposals=tf.constant(io["proposals"]))
        np.testing.assert_allclose(out["boxes"].numpy(), io["boxes"], atol=1e-3)
        np.testing.assert_allclose(out["scores"].numpy(), io["scores"], atol=1e-5)
        assert out["class_names"].numpy().tolist() == [b"square"] * len(io["boxes"])
        out = served.signatures["serving_default"](
            image_bytes=tf.io.read_file({str(tmp_path / "a.png")!r}),
            proposals=tf.constant(io["proposals"]))
        np.testing.assert_allclose(out["boxes"].numpy(), io["boxes"], atol=1e-3)
        assert "kdet" not in sys.modules
        print("ok")
        """
    )


def test_sliding_window_detector_round_trip(tmp_path):
    model = get_model("rcnn_classifier", backbone="small_cnn", input_size=32)
    detector = SlidingWindowDetector(model, window_size=(32, 32), step=16, score_threshold=0.0)
    image = square_image()
    expected = detector(image)["boxes"].numpy()
    path = export_detector(tmp_path / "sm", detector.detect_eager, ["square"], model)
    np.savez(tmp_path / "io.npz", image=image, boxes=expected)
    run_plain_tensorflow(
        f"""
        import numpy as np, tensorflow as tf
        io = np.load({str(tmp_path / "io.npz")!r})
        served = tf.saved_model.load({path!r})
        out = served.signatures["detect_image"](image=tf.constant(io["image"]))
        np.testing.assert_allclose(out["boxes"].numpy(), io["boxes"], atol=1e-3)
        print("ok")
        """
    )
