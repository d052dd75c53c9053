import json
import os
import subprocess
import sys
import textwrap

import pytest

from kdet import cli
from kdet.families import FAMILIES, Family
from kdet.stages import qualify

STAGE_SCRIPT = textwrap.dedent(
    """
    import json, sys, yaml
    params = yaml.safe_load(open("params.yaml"))["train_toy"][sys.argv[1]]
    metrics = {"epochs": params["epochs"], "iou": params["decoder"]["iou"]}
    json.dump({**metrics, "python": sys.executable}, open(f"metrics_{sys.argv[1]}.json", "w"))
    """
)


@pytest.fixture
def toy_project(tmp_path, monkeypatch):
    """A git + DVC project with one stage per dataset and a `toy` family pointing at them."""
    (tmp_path / "train.py").write_text(STAGE_SCRIPT)
    params = {name: {"epochs": 1, "decoder": {"iou": 0.5}} for name in ("a", "b")}
    (tmp_path / "params.yaml").write_text(json.dumps({"train_toy": params, "other": {"x": 1}}))
    stages = {
        f"train_toy_{name}": {
            "cmd": f"python train.py {name}",
            "deps": ["train.py"],
            "params": [f"train_toy.{name}"],
            "metrics": [{f"metrics_{name}.json": {"cache": False}}],
        }
        for name in ("a", "b")
    }
    (tmp_path / "dvc.yaml").write_text(json.dumps({"stages": stages}))
    (tmp_path / ".gitignore").write_text("mlflow.db\n.dvc_site_cache\n")
    git = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t"}
    for key, value in {**git, "GIT_COMMITTER_EMAIL": "t@t"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("DVC_SITE_CACHE_DIR", str(tmp_path / ".dvc_site_cache"))
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")
    for command in (["git", "init", "-q"], [sys.executable, "-m", "dvc", "init", "-q"]):
        subprocess.run(command, cwd=tmp_path, check=True)
    subprocess.run(["git", "add", "-A"], cwd=tmp_path, check=True)
    subprocess.run(["git", "commit", "-qm", "toy"], cwd=tmp_path, check=True)
    family = Family(
        summary="writes its parameters as metrics",
        datasets=("a", "b"),
        train="train_toy_{dataset}",
        evaluate="train_toy_{dataset}",
        export="train_toy_{dataset}",
        saved_model="models/{dataset}/saved_model",
        metrics="metrics_{dataset}.json",
    )
    monkeypatch.setitem(FAMILIES, "toy", family)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def last_json(text):
    return json.loads(text.strip().splitlines()[-1])


def test_train_runs_the_stage_then_an_experiment_with_overrides(toy_project, capsys):
    assert cli.main(["train", "toy"]) == 0
    result = last_json(capsys.readouterr().out)
    assert result["command"] == "dvc repro train_toy_a"
    metrics = result["metrics"]["metrics_a.json"]
    assert (metrics["epochs"], metrics["iou"]) == (1, 0.5)
    assert os.path.dirname(metrics["python"]) == os.path.dirname(sys.executable)
    argv = ["train", "toy", "--dataset", "b", "--set", "epochs=3", "--set", "decoder.iou=0.7"]
    assert cli.main(argv) == 0
    result = last_json(capsys.readouterr().out)
    assert result["command"] == (
        "dvc exp run train_toy_b -S train_toy.b.epochs=3 -S train_toy.b.decoder.iou=0.7"
    )
    assert result["metrics"]["metrics_b.json"]["epochs"] == 3
    assert result["metrics"]["metrics_b.json"]["iou"] == 0.7


def test_export_reports_the_saved_model_path(toy_project, capsys):
    assert cli.main(["export", "toy", "--dataset", "b"]) == 0
    assert last_json(capsys.readouterr().out)["saved_model"] == str(
        toy_project / "models" / "b" / "saved_model"
    )


def test_describe_and_help_list_stage_parameters_and_families(toy_project, capsys):
    assert cli.main(["evaluate", "toy", "--describe"]) == 0
    described = capsys.readouterr().err
    assert "stage train_toy_a: python train.py a" in described
    assert "parameters in params.yaml train_toy.a" in described
    assert "  decoder.iou = 0.5\n  epochs = 1\n" in described
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    assert "  toy              writes its parameters as metrics (datasets: a, b)" in (
        capsys.readouterr().out
    )


def test_unknown_family_dataset_or_key_is_a_clear_error(toy_project, capsys):
    assert cli.main(["train", "nope"]) == 1
    expected = ", ".join(sorted(FAMILIES))
    assert f"unknown model family 'nope'; available: {expected}" in capsys.readouterr().err
    assert cli.main(["train", "toy", "--dataset", "c"]) == 1
    assert "no stages for dataset 'c'; available: a, b" in capsys.readouterr().err
    assert cli.main(["train", "toy", "--set", "epoch=2"]) == 1
    assert "'epoch' is not a parameter of this stage; give one of: decoder.iou, epochs" in (
        capsys.readouterr().err
    )


def test_failing_stage_is_reported(toy_project, capsys):
    (toy_project / "train.py").write_text("raise SystemExit(3)\n")
    assert cli.main(["train", "toy"]) == 1
    assert "train_toy_a: `dvc repro train_toy_a` failed with exit status" in (
        capsys.readouterr().err
    )


def test_qualify_keeps_full_keys_and_rejects_ambiguity():
    groups = {"g.a": {"epochs": 1}, "g.b": {"epochs": 2, "lr": 0.1}}
    assert qualify("g.a.epochs=4", groups) == "g.a.epochs=4"
    assert qualify("lr=0.2", groups) == "g.b.lr=0.2"
    with pytest.raises(ValueError, match="'epochs' is in several parameter groups"):
        qualify("epochs=3", groups)
    with pytest.raises(ValueError, match="expected KEY=VALUE"):
        qualify("epochs", groups)


def test_outside_a_project_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(FAMILIES, "toy", Family("t", ("a",), "s", "s", "s", "m", "j"))
    monkeypatch.chdir(tmp_path)
    assert cli.main(["train", "toy"]) == 1
    assert "no dvc.yaml here" in capsys.readouterr().err
