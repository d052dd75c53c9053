import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import mlflow

from kdet.families import FAMILIES, Family
from tests.toy_detector import export_toy_detector

SCRIPT = Path(__file__).resolve().parents[1] / "pipelines" / "publish.py"


def test_publish_stage_registers_the_family_model(tmp_path, monkeypatch, capsys):
    subprocess.run(
        [sys.executable, "-m", "dvc", "init", "-q", "--no-scm"], cwd=tmp_path, check=True
    )
    export_toy_detector(tmp_path / "models" / "toy" / "saved_model")
    (tmp_path / "metrics.json").write_text(json.dumps({"mean_iou": 0.4, "mAP50": 0.1}))
    (tmp_path / "params.yaml").write_text("publish: {alias: best, proposals: null}\n")
    stage = {"cmd": "python publish.py toy shapes", "params": ["publish"]}
    (tmp_path / "dvc.yaml").write_text(json.dumps({"stages": {"publish": {
        "foreach": {"toy_shapes": {}}, "do": stage
    }}}))  # fmt: skip
    family = Family(
        summary="toy",
        datasets=("shapes",),
        train="t",
        evaluate="t",
        export="t",
        saved_model="models/toy/saved_model",
        metrics="metrics.json",
        rank_by="mean_iou",
        registered_model="{dataset}_toy",
    )
    monkeypatch.setitem(FAMILIES, "toy", family)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["publish.py", "toy", "shapes"])
    spec = importlib.util.spec_from_file_location("publish_stage", SCRIPT)
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
