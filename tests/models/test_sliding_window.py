import keras
import numpy as np
import pytest

from kdet.experiment import Experiment
from kdet.models import get_model
from kdet.models.rcnn.box_coder import decode_box_deltas
from kdet.models.rcnn.classifier import build_rcnn_classifier
from kdet.models.rcnn.detector import RCNNDetector
from kdet.models.rcnn.labelling import iou_matrix
from kdet.models.sliding_window import (
    SlidingWindowDetector,
    pyramid_windows,
    select_windows,
    window_candidates,
)
from tests.models.rcnn.conftest import square_image, square_records  # noqa: F401 (fixture)


def test_windows_cover_each_level_and_stay_inside():
    windows = pyramid_windows((64, 96), window_size=(32, 32), step=16, scale=2.0).numpy()
    # level 0: 3 x 5 windows of 32; level 1 (32 x 48): 1 x 2 windows, i.e. 64 px in the image.
    assert len(windows) == 15 + 2
    assert windows[:, 2].max() <= 96 and windows[:, 3].max() <= 64
    assert windows[-1].tolist() == [32, 0, 96, 64]
    half = pyramid_windows((64, 96), window_size=(32, 32), step=16, scale=2.0, image_side=48)
    assert half.numpy()[0].tolist() == [0, 0, 64, 64]  # the image is first halved
    assert pyramid_windows((20, 20), window_size=(32, 32)).shape == (0, 4)
    with pytest.raises(ValueError, match="scale: 1.0 is not allowed: a number > 1"):
        pyramid_windows((64, 64), scale=1.0)


def brightness_classifier(size):
    """A fixed classifier: P(object) rises with the crop's mean brightness."""
    inputs = keras.Input((size, size, 3))
    x = keras.layers.GlobalAveragePooling2D()(inputs)
    x = keras.layers.Dense(1, use_bias=False)(x)
    outputs = keras.layers.Dense(2, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    model.layers[2].set_weights([np.ones((3, 1)) / 3])
    model.layers[3].set_weights([np.array([[-0.01, 0.01]]), np.array([1.0, -1.0])])
    return model


def test_finds_the_bright_square():
    image = square_image(size=96, box=(32, 16, 64, 48))
    detector = SlidingWindowDetector(
        brightness_classifier(16), window_size=(32, 32), step=8, scale=1.5, iou_threshold=0.3
    )
    out = detector(image)
    assert out["boxes"].shape[0] >= 1
    assert iou_matrix(out["boxes"].numpy()[:1], np.array([[32, 16, 64, 48]], np.float32)) > 0.9
    assert out["classes"].numpy()[0] == 0


def test_works_with_the_registered_rcnn_classifier():
    classifier = get_model("rcnn_classifier", backbone="small_cnn", input_size=32)
    detector = SlidingWindowDetector(
        classifier, window_size=(32, 32), step=16, score_threshold=0.0, batch_size=4
    )
    out = detector(square_image())
    assert out["boxes"].shape[1] == 4 and out["scores"].shape[0] == out["boxes"].shape[0] > 0


def shifting_classifier(size):
    """An untrained paper R-CNN classifier whose box correction moves every region right by
    half a width (``t_x = 0.5`` before the coder's variance)."""
    keras.utils.set_random_seed(0)
    classifier = build_rcnn_classifier(backbone="small_cnn", input_size=size, box_regression=True)
    layer = classifier.get_layer("box_delta_flat")
    kernel, bias = layer.get_weights()
    layer.set_weights([np.zeros_like(kernel), np.array([5.0, 0, 0, 0], np.float32)])
    return classifier


def test_windows_move_by_the_box_correction_as_rcnn_proposals_do():
    classifier, image = shifting_classifier(32), square_image()
    options = {"score_threshold": 0.0, "iou_threshold": 1.0, "max_detections": 100}
    detector = SlidingWindowDetector(classifier, window_size=(32, 32), step=16, **options)
    windows = detector.windows(image.shape).numpy()
    out = detector(image)
    rcnn = RCNNDetector(classifier, **options)(image, windows)
    np.testing.assert_allclose(out["boxes"].numpy(), rcnn["boxes"].numpy())
    np.testing.assert_allclose(out["scores"].numpy(), rcnn["scores"].numpy())
    # every window moved right by half its width, clipped to the image
    moved = np.clip(decode_box_deltas(windows, [[5.0, 0, 0, 0]]).numpy(), 0, 64)
    assert sorted(map(tuple, out["boxes"].numpy())) == sorted(map(tuple, moved))
    assert not np.allclose(moved, windows)
    kept = SlidingWindowDetector(
        classifier, window_size=(32, 32), step=16, regress=False, **options
    )
    assert sorted(map(tuple, kept(image)["boxes"].numpy())) == sorted(map(tuple, windows))


def test_selection_picks_the_windows_that_fit_the_squares(square_records):  # noqa: F811
    # 48-pixel windows never reach IoU 0.5 with the ~30-pixel squares; 32-pixel ones do.
    candidates = window_candidates(
        {"window_size": [[48, 48], [32, 32]], "step": [4], "scale": [2.0], "image_side": [None]}
    )
    selection = select_windows(
        brightness_classifier(16), square_records, candidates, score_threshold=0.0
    )
    assert selection.setting == {
        "window_size": [32, 32],
        "step": 4,
        "scale": 2.0,
        "image_side": None,
    }
    assert [row[0] for row in selection.candidates] == candidates
    assert (
        selection.candidates[0][1]
        == 0.0
        < selection.candidates[1][1]
        == selection.report.result.mAP50
    )
    metrics = selection.as_metrics()
    assert metrics["chosen"]["window_width"] == 32
    assert set(metrics["candidates"]) == {
        "window_48x48_step_4_scale_2.0_side_None",
        "window_32x32_step_4_scale_2.0_side_None",
    }


@pytest.mark.parametrize(
    "evaluate, message",
    [
        ({"step": 0}, "evaluate.step: 0 is not allowed: a whole number >= 1"),
        ({"window_size": [64]}, r"evaluate.window_size: \[64\] is not allowed: \[height, width\]"),
        ({"window_grid": {"scale": [1.5, 1.0]}}, "evaluate.window_grid.scale: 1.0 is not allowed"),
        (
            {"window_grid": {"step": []}},
            r"evaluate.window_grid.step: \[\] is not allowed: a non-empty",
        ),
        ({"window_grid": {"image_side": [0]}}, "evaluate.window_grid.image_side: 0 is not allowed"),
    ],
)
def test_bad_window_options_name_the_option(evaluate, message):
    row = {"family": "sliding_window", "dataset": "raccoon", "train": {}, "evaluate": evaluate}
    with pytest.raises(ValueError, match=f"finetune.x.{message}"):
        Experiment.from_row("x", row, where="finetune")
