"""SavedModels of the R-CNN family load and run in a process that imports only TensorFlow."""

import subprocess
import sys
import textwrap

import numpy as np
from PIL import Image

from kdet.export import export_detector, export_proposal_detector
from kdet.models import get_model
from kdet.models.rcnn.detector import RCNNDetector
from kdet.models.rcnn.fast_rcnn import FastRCNNDetector
from kdet.models.sliding_window import SlidingWindowDetector
from tests.models.rcnn.conftest import square_image

PROPOSALS = np.array([[16, 20, 44, 52], [0, 0, 64, 64], [10, 10, 30, 30]], np.float32)


def test_exported_detectors_match_in_plain_tensorflow(tmp_path):
    image = square_image()
    Image.fromarray(image).save(tmp_path / "a.png")
    options = {"score_threshold": 0.0, "iou_threshold": 0.99}
    classifier = get_model("rcnn_classifier", backbone="small_cnn", input_size=32)
    regressing = get_model(
        "rcnn_classifier", backbone="small_cnn", input_size=32, box_regression=True
    )
    box_layer = regressing.get_layer("box_delta_flat")  # move every box: parity must see it
    box_layer.set_weights([box_layer.get_weights()[0], np.array([3.0, -2.0, 1.0, 0.5])])
    paper = RCNNDetector(regressing, **options)
    moved = paper(image, PROPOSALS)["boxes"].numpy()
    assert not np.isin(moved.round(3), PROPOSALS).all(axis=1).any()  # the boxes moved
    fast = get_model("fast_rcnn", backbone="small_cnn", image_size=64, pool_size=3)
    expected = {}
    for name, detector, model in [
        ("rcnn", RCNNDetector(classifier, **options), classifier),
        ("rcnn_paper", paper, regressing),
        ("fast_rcnn", FastRCNNDetector(fast, **options), fast),
    ]:
        export_proposal_detector(tmp_path / name, detector.detect_eager, ["square"], model)
        expected[name] = detector(image, PROPOSALS)["boxes"].numpy()
    windows = SlidingWindowDetector(classifier, window_size=(32, 32), step=16, **options)
    export_detector(tmp_path / "windows", windows.detect_eager, ["square"], classifier)
    expected["windows"] = windows(image)["boxes"].numpy()
    np.savez(tmp_path / "io.npz", image=image, proposals=PROPOSALS, **expected)

    script = f"""
        import sys, numpy as np, tensorflow as tf
        root = {str(tmp_path)!r}
        io = np.load(root + "/io.npz")
        image, proposals = tf.constant(io["image"]), tf.constant(io["proposals"])
        for name in ("rcnn", "rcnn_paper", "fast_rcnn"):
            served = tf.saved_model.load(f"{{root}}/{{name}}")
            out = served.signatures["detect_image"](image=image, proposals=proposals)
            np.testing.assert_allclose(out["boxes"].numpy(), io[name], atol=1e-3)
            assert out["class_names"].numpy().tolist() == [b"square"] * len(io[name])
            out = served.signatures["serving_default"](
                image_bytes=tf.io.read_file(root + "/a.png"), proposals=proposals)
            np.testing.assert_allclose(out["boxes"].numpy(), io[name], atol=1e-3)
        served = tf.saved_model.load(root + "/windows")
        out = served.signatures["detect_image"](image=image)
        np.testing.assert_allclose(out["boxes"].numpy(), io["windows"], atol=1e-3)
        assert "kdet" not in sys.modules
        print("ok")
        """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True
    )
    assert result.stdout.strip().endswith("ok"), result.stderr[-3000:]
