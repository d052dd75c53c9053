import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from kdet.export import export_detector


def whole_image_detector(image):
    """A detector that reports one box covering the whole image, class 1."""
    shape = tf.cast(tf.shape(image), tf.float32)
    box = tf.stack([0.0, 0.0, shape[1], shape[0]])[tf.newaxis]
    return {"boxes": box, "scores": tf.constant([0.9]), "classes": tf.constant([1])}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    path = tmp_path_factory.mktemp("export") / "saved_model"
    export_detector(path, whole_image_detector, ["cat", "dog"])
    return path


def test_plain_tensorflow_process_reads_jpeg_and_uint8(exported, tmp_path):
    jpeg = tmp_path / "a.jpg"
    Image.fromarray(np.zeros((30, 50, 3), np.uint8)).save(jpeg)
    script = textwrap.dedent(
        f"""
        import sys, numpy as np, tensorflow as tf
        served = tf.saved_model.load({str(exported)!r})
        out = served.signatures["serving_default"](image_bytes=tf.io.read_file({str(jpeg)!r}))
        assert out["boxes"].numpy().tolist() == [[0, 0, 50, 30]], out["boxes"]
        assert out["class_names"].numpy().tolist() == [b"dog"]
        out = served.signatures["detect_image"](image=tf.zeros((7, 9, 3), tf.uint8))
        assert out["boxes"].numpy().tolist() == [[0, 0, 9, 7]]
        assert int(out["num_detections"]) == 1
        assert "kdet" not in sys.modules
        print("ok")
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.stdout.strip().endswith("ok"), result.stderr[-2000:]


@pytest.mark.parametrize(
    "payload,message",
    [(b"", "image_bytes: empty file"), (b"not an image", "image_bytes: not a JPEG, PNG, GIF")],
)
def test_bad_bytes_get_a_clear_error(exported, payload, message):
    served = tf.saved_model.load(str(exported))
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        served.signatures["serving_default"](image_bytes=tf.constant(payload))


def test_wrong_dtype_is_rejected_by_the_signature(exported):
    served = tf.saved_model.load(str(exported))
    with pytest.raises(tf.errors.InvalidArgumentError, match="expected to be a uint8 tensor"):
        served.signatures["detect_image"](image=tf.zeros((7, 9, 3), tf.float32))
