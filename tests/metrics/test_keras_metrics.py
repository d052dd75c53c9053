import keras
import numpy as np
import pytest

from kdet.metrics import box_iou_per_image
from kdet.metrics.keras_metrics import BoxIoU


def test_box_iou_matches_numpy_in_every_format():
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 0.5, (16, 2))
    y_true = np.concatenate([xy, xy + rng.uniform(0.1, 0.5, (16, 2))], axis=1)
    y_pred = y_true + rng.normal(0, 0.05, (16, 4))
    expected = box_iou_per_image(y_true, y_pred, "rel_xyxy").mean()
    metric = BoxIoU("rel_xyxy")
    metric.update_state(y_true[:8], y_pred[:8])
    metric.update_state(y_true[8:], y_pred[8:])
    assert float(metric.result()) == pytest.approx(expected, abs=1e-6)

    def xywh(b):
        return np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], axis=1) * 100

    metric = BoxIoU("xywh")
    metric.update_state(xywh(y_true), xywh(y_pred))
    assert float(metric.result()) == pytest.approx(expected, abs=1e-5)


def test_box_iou_in_compile_fit_and_keras_round_trip(tmp_path):
    inputs = keras.Input((8,))
    model = keras.Model(inputs, keras.layers.Dense(4, activation="sigmoid")(inputs))
    model.compile(optimizer="sgd", loss="mse", metrics=[BoxIoU("rel_xyxy")])
    x = np.random.default_rng(1).random((8, 8)).astype("float32")
    y = np.tile([[0.1, 0.1, 0.6, 0.7]], (8, 1)).astype("float32")
    history = model.fit(x, y, epochs=1, verbose=0)
    assert 0.0 <= history.history["box_iou"][0] <= 1.0
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert loaded.evaluate(x, y, verbose=0, return_dict=True)["box_iou"] == pytest.approx(
        model.evaluate(x, y, verbose=0, return_dict=True)["box_iou"], abs=1e-6
    )
