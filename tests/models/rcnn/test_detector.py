import numpy as np

from kdet.models.rcnn.box_coder import decode_box_deltas
from kdet.models.rcnn.classifier import build_rcnn_classifier
from kdet.models.rcnn.detector import (
    RCNNDetector,
    class_probabilities,
    crop_regions,
    region_outputs,
    select_detections,
)
from tests.models.rcnn.conftest import square_image
from tests.models.test_sliding_window import brightness_classifier

PROPOSALS = np.array(
    [[16, 20, 44, 52], [0, 0, 64, 64], [10, 10, 30, 30], [40, 40, 63, 60], [17, 21, 45, 50]],
    np.float32,
)


def test_crop_of_a_box_matches_slicing_the_image():
    image = np.random.default_rng(0).integers(0, 255, (40, 50, 3)).astype(np.uint8)
    crops = crop_regions(image, [[10, 5, 26, 21]], crop_size=16).numpy()
    np.testing.assert_allclose(crops[0], image[5:21, 10:26], atol=1e-3)  # same size: identity


def test_batched_crops_equal_a_loop_over_crops():
    classifier = build_rcnn_classifier(backbone="small_cnn", input_size=32)
    image = square_image()
    batched = class_probabilities(region_outputs(classifier, image, PROPOSALS, crop_size=32))
    looped = np.concatenate(
        [classifier(crop_regions(image, box[None], 32), training=False) for box in PROPOSALS]
    )
    np.testing.assert_allclose(batched, looped, rtol=1e-4, atol=1e-5)
    chunked = region_outputs(classifier, image, PROPOSALS, crop_size=32, batch_size=2)
    np.testing.assert_allclose(class_probabilities(chunked), batched, rtol=1e-4, atol=1e-5)


def test_nms_is_class_wise_and_thresholded():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [0, 0, 10, 10], [50, 50, 60, 60]])
    scores = np.array(
        [[0.9, 0.0], [0.8, 0.0], [0.0, 0.7], [0.2, 0.0]], np.float32
    )  # box 1 overlaps box 0 (same class); box 2 is the same place but class 1
    out = select_detections(
        boxes, scores, score_threshold=0.5, iou_threshold=0.5, max_detections=10
    )
    assert out["boxes"].numpy().tolist() == [[0, 0, 10, 10], [0, 0, 10, 10]]
    np.testing.assert_allclose(out["scores"].numpy(), [0.9, 0.7])
    assert out["classes"].numpy().tolist() == [0, 1]


def test_detector_keeps_the_best_proposal():
    detector = RCNNDetector(brightness_classifier(16), score_threshold=0.8, iou_threshold=0.3)
    out = detector(square_image(), PROPOSALS)
    # Proposals fully on the square score highest; NMS keeps one of them.
    assert out["boxes"].shape == (1, 4)
    assert out["boxes"].numpy()[0].tolist() in (PROPOSALS[[0, 4]].tolist())
    assert out["classes"].numpy().tolist() == [0]
    none = RCNNDetector(brightness_classifier(16), score_threshold=0.5, max_proposals=0)
    assert none(square_image(), PROPOSALS)["boxes"].shape == (0, 4)


def _regressing_classifier(deltas):
    """An untrained two-class classifier whose box output is ``deltas`` (C, 4) for any crop."""
    classifier = build_rcnn_classifier(
        num_classes=2, backbone="small_cnn", input_size=16, box_regression=True
    )
    layer = classifier.get_layer("box_delta_flat")
    kernel, bias = layer.get_weights()
    layer.set_weights([np.zeros_like(kernel), np.asarray(deltas, np.float32).reshape(bias.shape)])
    return classifier


def test_detector_moves_each_proposal_by_its_best_class_regression():
    deltas = np.array([[5.0, 0, 0, 0], [0, 5.0, 0, 0]], np.float32)  # class 0 right, 1 down
    classifier = _regressing_classifier(deltas)
    image = square_image()
    options = {"score_threshold": 0.0, "iou_threshold": 0.99, "max_detections": 10}
    out = RCNNDetector(classifier, **options)(image, PROPOSALS)
    still = RCNNDetector(classifier, regress=False, **options)(image, PROPOSALS)
    probs = classifier(crop_regions(image, PROPOSALS, 16))["class_label"].numpy()[:, 1:]
    best = probs.argmax(axis=1)
    expected = np.clip(decode_box_deltas(PROPOSALS, deltas[best]).numpy(), 0, 64)
    order = np.argsort(-probs.max(axis=1), kind="stable")
    np.testing.assert_allclose(out["boxes"].numpy(), expected[order], atol=1e-3)
    np.testing.assert_allclose(still["boxes"].numpy(), PROPOSALS[order], atol=1e-3)
    assert out["classes"].numpy().tolist() == best[order].tolist()
