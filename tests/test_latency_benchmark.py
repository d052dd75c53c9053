"""The latency benchmark's core on tiny untrained models exported to a tmp folder."""

import keras
import numpy as np

from kdet.deploy.benchmark import benchmark_forward, benchmark_saved_model
from kdet.latency import time_calls
from pipelines.benchmark_latency import find_rows, format_table, table_rows
from tests.toy_detector import export_toy_detector, export_toy_proposal_detector

IMAGES = [np.zeros((24, 32, 3), np.uint8), np.full((40, 20, 3), 200, np.uint8)]
FAST = {"warmup": 1, "repeats": 2}


def test_a_failing_way_is_a_reason_and_the_others_are_timed():
    stats, reasons = time_calls({"ok": lambda i: i, "bad": lambda i: {}["key"]}, catch=True)
    assert set(stats) == {"ok"} and stats["ok"]["latency_p90_ms"] >= stats["ok"]["latency_ms"]
    assert reasons == {"bad": "KeyError: 'key'"}


def test_saved_model_xla_failure_is_reported_not_raised(tmp_path):
    saved_model = export_toy_detector(tmp_path / "toy")
    result = benchmark_saved_model(
        saved_model,
        IMAGES,
        artifacts={"onnx": tmp_path / "missing.onnx"},
        concurrency=2,
        rounds=1,
        **FAST,
    )
    formats = result["formats"]
    assert set(formats) == {"saved_model", "xla", "onnx"}
    assert 0 < formats["saved_model"]["latency_ms"] <= formats["saved_model"]["latency_p90_ms"]
    # The contract's class_names come from a string table, which XLA cannot compile.
    assert formats["xla"]["reason"].startswith("InvalidArgumentError: ")
    assert "no such file" in formats["onnx"]["reason"] and result["xla_ratio"] is None
    assert set(result["throughput"]) == {"sequential", "concurrent"}
    assert result["proposals"] is False and result["proposal_search_ms"] is None

    result = {"family": "toy", "images": len(IMAGES), **result}
    flat = table_rows({"toy": result})
    assert [r["format"] for r in flat] == ["saved_model", "xla", "onnx"]
    assert "InvalidArgumentError" in format_table(flat, concurrency=2)


def test_proposal_detectors_are_timed_with_their_proposals_supplied(tmp_path):
    saved_model = export_toy_proposal_detector(tmp_path / "toy")
    result = benchmark_saved_model(saved_model, IMAGES, concurrency=2, rounds=1, **FAST)
    assert result["proposals"] is True and result["proposal_search_ms"] > 0
    assert result["formats"]["saved_model"]["latency_ms"] > 0


def test_forward_at_batch_one_and_n_plain_and_xla():
    model = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Conv2D(2, 3)])
    result = benchmark_forward(model, batch=2, **FAST)
    assert set(result["ways"]) == {"plain x1", "plain xN", "xla x1", "xla xN"}
    assert result["reasons"] == {}
    assert all(way["images_per_s"] > 0 for way in result["ways"].values())
    assert result["batch_speedup"] > 0 and result["xla_ratio"] > 0


def test_models_without_a_row_are_named_and_left_out(tmp_path, capsys):
    for name in ("rcnn_raccoon", "rcnn_raccoon_seed1"):
        (tmp_path / name / "saved_model").mkdir(parents=True)
        (tmp_path / name / "saved_model" / "saved_model.pb").write_bytes(b"")
    params = {"experiments": {"rcnn_raccoon": {"family": "rcnn"}}}

    assert find_rows(params, tmp_path) == {"rcnn_raccoon": {"family": "rcnn"}}
    assert "no row 'rcnn_raccoon_seed1' in params.yaml; not timed" in capsys.readouterr().err
