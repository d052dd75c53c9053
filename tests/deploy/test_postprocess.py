import numpy as np
import pytest
import tensorflow as tf

from kdet.deploy.postprocess import boxes_to_image, fit_image, select
from kdet.models.single_box.data import resize_image
from kdet.models.yolov8.inputs import boxes_to_original, fit_to_model


@pytest.mark.parametrize("shape", [(48, 80, 3), (100, 70, 3), (64, 64, 3), (7, 200, 3)])
def test_fit_image_matches_the_serving_graph(shape):
    image = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    letterbox, geometry = fit_image(image, (64, 64), "letterbox")
    np.testing.assert_allclose(letterbox[0], fit_to_model(image, (64, 64)).numpy(), atol=1e-3)
    stretch, _ = fit_image(image, (64, 64), "stretch")
    np.testing.assert_allclose(stretch[0], resize_image(image, (64, 64)).numpy(), atol=1e-3)
    boxes = np.array([[1.0, 2.0, 30.0, 60.0], [-5.0, 10.0, 70.0, 50.0]], np.float32)
    expected = boxes_to_original(tf.constant(boxes), shape[0], shape[1], (64, 64)).numpy()
    np.testing.assert_allclose(boxes_to_image(boxes, geometry), expected, atol=1e-4)


def test_select_is_class_agnostic_greedy_nms():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30], [0, 0, 9, 10]], "float32")
    scores = np.array([[0.9, 0.1], [0.2, 0.8], [0.1, 0.3], [0.05, 0.01]], "float32")
    kept, best, classes = select(boxes, scores, nms=True, iou_threshold=0.5, max_detections=10)
    np.testing.assert_array_equal(kept, boxes[[0, 2]])
    np.testing.assert_allclose(best, [0.9, 0.3])
    np.testing.assert_array_equal(classes, [0, 1])
    kept, *_ = select(boxes, scores, nms=True, confidence_threshold=0.5)
    assert len(kept) == 1


def test_fit_image_rejects_bad_images():
    with pytest.raises(ValueError, match="height, width, 3"):
        fit_image(np.zeros((0, 4, 3), np.uint8), (64, 64), "stretch")
