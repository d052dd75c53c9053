"""pipelines/stage_timing.py: each stage's wall time, and the table of the main job."""

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "pipelines" / "stage_timing.py"


def load():
    spec = importlib.util.spec_from_file_location("stage_timing", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_stage_records_its_process_time_and_the_table_sums_them(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    stage_timing = load()
    written = stage_timing.record("train", "yolov8_shapes")
    on_disk = json.loads((tmp_path / "data/metrics/timing/train_yolov8_shapes.json").read_text())
    assert on_disk == written
    assert written["stage"] == "train@yolov8_shapes"
    assert written["seconds"] > 0 and written["cpu_seconds"] > 0  # this test process's own
    assert len(written["load_average"]) == 3 and written["cores"] >= 1

    earlier = {**written, "stage": "fetch@shapes", "seconds": 2.5, "finished": "2000-01-01"}
    (tmp_path / "data/metrics/timing/fetch_shapes.json").write_text(json.dumps(earlier))
    rows = stage_timing.table().splitlines()
    assert rows[2].startswith("| fetch@shapes | 2.5 |")  # in the order they finished
    assert rows[3].startswith("| train@yolov8_shapes |")
    assert rows[4] == f"| **total** | **{2.5 + written['seconds']:.1f}** | | |"
