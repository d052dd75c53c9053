"""The CLI's family table agrees with the project's dvc.yaml."""

from pathlib import Path

import pytest
import yaml

from kdet.families import FAMILIES

ROOT = Path(__file__).resolve().parents[1]
STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def names(entries):
    return [next(iter(e)) if isinstance(e, dict) else e for e in entries or []]


def inside(path, outputs):
    return any(path == out or path.startswith(f"{out}/") for out in outputs)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_family_stages_write_its_saved_model_and_metrics(name):
    family = FAMILIES[name]
    for dataset in family.datasets:
        stages = {command: family.stage(command, dataset) for command in ("train", "evaluate")}
        stages["export"] = family.stage("export", dataset)
        assert set(stages.values()) <= set(STAGES), stages
        export = STAGES[stages["export"]]
        assert inside(family.path("saved_model", dataset), names(export.get("outs")))
        evaluate = STAGES[stages["evaluate"]]
        assert family.path("metrics", dataset) in names(evaluate.get("metrics"))
        item = STAGES["publish"]["foreach"][f"{name}_{dataset}"]
        assert (item["family"], item["dataset"]) == (name, dataset)
        assert item["saved_model"] == family.path("saved_model", dataset)
        assert item["metrics"] == family.path("metrics", dataset)
