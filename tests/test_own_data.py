"""A user's own labelled images, end to end: VOC, COCO and YOLO folders (with their messy
cases) imported by ``kdet.datasets.fetch``, then trained and evaluated through the
experiment runner; every class gets its AP (tiny models on 64x64 images)."""

import keras
import pytest

from kdet.datasets import fetch
from kdet.experiment import Layout
from tests.datasets.messy import make_coco, make_voc, make_yolo
from tests.runner_helpers import mlflow_run, run, run_id, tiny_row

MAKERS = {"voc": make_voc, "coco": make_coco, "yolo": make_yolo}
# One format x family pair in the default suite, the rest marked ``slow`` (``-m slow``).
CASES = [
    pytest.param("yolo", "fast_rcnn"),  # (voc, yolov8) runs in tests/test_dvc_pipeline.py
    pytest.param("voc", "yolov8", marks=pytest.mark.slow),
    pytest.param("coco", "yolov8", marks=pytest.mark.slow),
    pytest.param("yolo", "yolov8", marks=pytest.mark.slow),
    pytest.param("voc", "fast_rcnn", marks=pytest.mark.slow),
    pytest.param("coco", "fast_rcnn", marks=pytest.mark.slow),
]


@pytest.fixture(autouse=True)
def float32_policy():
    yield
    keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize(("fmt", "family"), CASES)
def test_own_dataset_trains_and_reports_every_class(tmp_path, fmt, family):
    source = MAKERS[fmt](tmp_path / "source")
    records = fetch(fmt, Layout(tmp_path).records("mine"), path=source)
    assert {"train", "test"} <= {r.split for r in records.records}
    row = tiny_row(family, "mine", tmp_path)
    row["train"]["epochs"] = 2
    _, _, metrics = run(tmp_path, f"{family}_mine", row)

    assert 0.0 <= metrics["mAP50"] <= 1.0
    # every class with a test box gets its AP (classes without one have no AP to report)
    tested = {records.class_names[c] for r in records.split("test").records for c in r.classes}
    assert {"rectangle", "ellipse"} <= tested
    expected = {f"{kind}/{name}" for name in tested for kind in ("AP50", "AP")}
    assert expected <= set(metrics), sorted(metrics)
    logged = mlflow_run(run_id(tmp_path, f"{family}_mine")).data.metrics
    assert expected <= set(logged)
    assert (Layout(tmp_path).saved_model(f"{family}_mine") / "saved_model.pb").exists()
