import importlib.util
import json
import sys
from pathlib import Path

import mlflow

from kdet.experiment import Layout
from tests.toy_detector import export_toy_detector

SCRIPT = Path(__file__).resolve().parents[1] / "pipelines" / "experiment.py"


def test_publish_stage_registers_the_experiment_model(tmp_path, monkeypatch, capsys):
    layout = Layout(tmp_path)
    export_toy_detector(layout.saved_model("toy_shapes"))
    layout.metrics("toy_shapes").parent.mkdir(parents=True)
    layout.metrics("toy_shapes").write_text(json.dumps({"mean_iou": 0.4, "mAP50": 0.1}))
    row = {
        "family": "multiclass",  # ranked by mean_iou
        "dataset": "shapes",
        "registered_model": "shapes_toy",
        "train": {},
        "evaluate": {},
    }
    params = {"publish": {"alias": "best", "proposals": None}, "experiments": {"toy_shapes": row}}
    (tmp_path / "params.yaml").write_text(json.dumps(params))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["experiment.py", "publish", "toy_shapes"])
    monkeypatch.syspath_prepend(str(SCRIPT.parent))  # as `python pipelines/...` has it
    spec = importlib.util.spec_from_file_location("experiment_stage", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main()
    result = json.loads((tmp_path / "data" / "published" / "toy_shapes.json").read_text())
    assert (result["registered_model"], result["version"], result["alias_version"]) == (
        "shapes_toy",
        "1",
        "1",
    )
    version = mlflow.MlflowClient().get_model_version_by_alias("shapes_toy", "best")
    assert version.tags["metric.mean_iou"] == "0.4"
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == result
