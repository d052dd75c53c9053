import numpy as np
import pytest

from kdet.metrics import box_iou_per_image, box_regression_metrics, mean_box_baseline


def test_hand_computed_ious():
    y_true = [[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]]
    y_pred = [[0, 0, 10, 10], [0, 0, 10, 5], [5, 5, 15, 15], [20, 20, 30, 30]]
    metrics = box_regression_metrics(y_true, y_pred, "xyxy")
    expected = [1.0, 0.5, 25 / 175, 0.0]
    np.testing.assert_allclose(metrics["per_image_iou"], expected)
    assert metrics["mean_iou"] == pytest.approx(np.mean(expected))
    assert metrics["iou_at_50"] == 0.5  # 1.0 and 0.5 reach 0.5
    assert metrics["iou_at_75"] == 0.25


def test_formats_agree():
    xyxy = np.array([[10, 20, 50, 60], [0, 0, 30, 40]], dtype=float)
    pred = np.array([[15, 20, 55, 70], [5, 5, 30, 40]], dtype=float)
    expected = box_iou_per_image(xyxy, pred, "xyxy")

    def xywh(b):
        return np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], axis=1)

    np.testing.assert_allclose(box_iou_per_image(xywh(xyxy), xywh(pred), "xywh"), expected)
    # Relative boxes need no image size: IoU is unchanged by per-axis scaling.
    scale = np.array([100, 80, 100, 80])
    np.testing.assert_allclose(
        box_iou_per_image(xyxy / scale, pred / scale, "rel_xyxy"), expected, rtol=1e-12
    )
    yxyx = np.concatenate([xyxy[:, 1::-1], xyxy[:, :1:-1]], axis=1)
    yxyx_pred = np.concatenate([pred[:, 1::-1], pred[:, :1:-1]], axis=1)
    np.testing.assert_allclose(box_iou_per_image(yxyx, yxyx_pred, "yxyx"), expected)


def test_mean_box_baseline_relative():
    train = [[0.0, 0.0, 0.5, 0.5], [0.2, 0.2, 0.7, 0.9]]
    test = [[0.1, 0.1, 0.6, 0.7], [0.0, 0.0, 1.0, 1.0]]
    metrics = mean_box_baseline(train, test)
    np.testing.assert_allclose(metrics["mean_box"], [0.1, 0.1, 0.6, 0.7])
    # Second test image: the 0.5 x 0.6 mean box inside the whole image, IoU 0.3.
    np.testing.assert_allclose(metrics["per_image_iou"], [1.0, 0.3])
    assert metrics["iou_at_50"] == 0.5


def test_mean_box_baseline_absolute_uses_each_image_size():
    # (height, width) differ per image; the mean is taken in relative coordinates.
    train = [[0, 0, 50, 100], [100, 0, 200, 100]]  # rel: [0,0,.5,.5] and [.5,0,1,1]
    train_sizes = [(200, 100), (100, 200)]
    test = [[50, 0, 150, 150]]  # rel [.25, 0, .75, .75] in a 200 x 200 image
    metrics = mean_box_baseline(train, test, "xyxy", train_sizes, [(200, 200)])
    np.testing.assert_allclose(metrics["mean_box"], [0.25, 0.0, 0.75, 0.75])
    assert metrics["mean_iou"] == pytest.approx(1.0)


def test_bad_input_is_reported():
    with pytest.raises(ValueError, match="train_image_sizes"):
        mean_box_baseline([[0, 0, 5, 5]], [[0, 0, 5, 5]], "xyxy")
    with pytest.raises(ValueError, match="shape"):
        mean_box_baseline([[0, 0, 5, 5]], [[0, 0, 5, 5]], "xyxy", [(10, 10)], [(10,)])
    with pytest.raises(ValueError, match="one box per image"):
        box_iou_per_image([[0, 0, 1, 1]], [[0, 0, 1, 1], [0, 0, 1, 1]], "xyxy")
    with pytest.raises(ValueError, match="at least one image"):
        box_regression_metrics(np.zeros((0, 4)), np.zeros((0, 4)), "xyxy")
    with pytest.raises(ValueError, match="Unknown bounding box format"):
        box_iou_per_image([[0, 0, 1, 1]], [[0, 0, 1, 1]], "xyz")
