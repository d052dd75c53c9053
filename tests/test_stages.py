"""The command line's routing: a row's DVC stage inside a project, the runner elsewhere;
and the generated pipeline's dependencies."""

import ast
import json
from pathlib import Path

import pytest
import yaml

from kdet import cli, experiment, stages
from kdet.families import family_names, get_family

ROOT = Path(__file__).resolve().parents[1]


def write_project(folder: Path, params: dict) -> Path:
    (folder / "dvc.yaml").write_text((ROOT / "dvc.yaml").read_text())
    (folder / "params.yaml").write_text(yaml.safe_dump(params))
    return folder


PARAMS = {
    "datasets": {"shapes": {"source": "shapes", "num_images": 8, "image_size": 64}},
    "experiments": {
        "yolov8_shapes": {"family": "yolov8", "dataset": "shapes", "train": {}, "evaluate": {}}
    },
    "finetune": {
        "sw_shapes": {
            "family": "sliding_window",
            "dataset": "shapes",
            "init_from": "rcnn_x",
            "train": {},
            "evaluate": {},
        }
    },
}


def test_find_row_and_stage_names():
    root = ROOT
    assert stages.find_row(root, "yolov8", "raccoon") == ("experiments", "yolov8_raccoon")
    assert stages.find_row(root, "yolov8", "open_images") == ("finetune", "yolov8_open_images")
    assert stages.find_row(root, "yolov8", "nowhere") is None
    assert stages.stage_name("experiments", "a", "evaluate") == "evaluate@a"
    assert stages.stage_name("finetune", "a", "train") == "finetune@a"
    assert stages.stage_name("finetune", "a", "publish") == "publish_finetuned@a"


def test_qualify_option_short_dotted_and_errors():
    defaults = get_family("yolov8").defaults
    assert stages.qualify_option("epochs=2", defaults) == ("train.epochs", 2)
    assert stages.qualify_option("evaluate.decoder.iou_threshold=0.5", defaults) == (
        "evaluate.decoder.iou_threshold",
        0.5,
    )
    with pytest.raises(ValueError, match="several option groups") as ambiguous:
        stages.qualify_option("batch_size=4", defaults)  # train and evaluate both have it
    assert str(ambiguous.value).endswith("give one of: evaluate.batch_size, train.batch_size")
    with pytest.raises(ValueError, match="not an option of this family.*train.epochs"):
        stages.qualify_option("epoch=2", defaults)
    with pytest.raises(ValueError, match="KEY=VALUE"):
        stages.qualify_option("epochs", defaults)
    assert stages.nest({"train.epochs": 2, "evaluate.decoder.iou_threshold": 0.5}) == {
        "train": {"epochs": 2},
        "evaluate": {"decoder": {"iou_threshold": 0.5}},
    }


def test_dataset_slug():
    assert stages.dataset_slug("/data/My VOC/") == "my_voc"
    assert stages.dataset_slug("coco/annotations/instances_train.json") == (
        "annotations_instances_train"
    )
    assert stages.dataset_slug("sets/pets/data.yaml") == "pets_data"


def test_a_row_in_the_project_runs_its_dvc_stage(tmp_path, monkeypatch, capsys):
    write_project(tmp_path, PARAMS)
    monkeypatch.setenv("KDET_PROJECT_ROOT", str(tmp_path))
    calls = []

    def run_stage(stage, sets, *, root, metrics):
        calls.append((stage, list(sets), Path(root), list(metrics)))
        if stage.startswith("evaluate"):  # the stage's SavedModel, which kdet export checks
            saved_model = experiment.Layout(root).saved_model(stage.partition("@")[2])
            saved_model.mkdir(parents=True)
            (saved_model / "saved_model.pb").write_bytes(b"")
        return {"stage": stage, "command": "dvc ...", "metrics": {}}

    monkeypatch.setattr(stages, "run_stage", run_stage)
    assert cli.main(["train", "yolov8", "--data", "shapes", "--set", "epochs=3"]) == 0
    assert calls[-1] == (
        "train@yolov8_shapes",
        ["++experiments.yolov8_shapes.train.epochs=3"],
        tmp_path,
        ["data/metrics/yolov8_shapes_train.json"],
    )
    assert cli.main(["export", "sliding_window", "--data", "shapes"]) == 0
    assert calls[-1][0] == "evaluate_finetuned@sw_shapes"
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["saved_model"] == str(tmp_path / "data/models/sw_shapes/saved_model")
    assert out["artifacts"] == {"saved_model": out["saved_model"]}


def test_other_data_runs_the_runner_directly(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KDET_PROJECT_ROOT", str(tmp_path))  # no dvc.yaml: not a project
    seen = {}

    def train(exp, *, root):
        seen["train"] = exp
        layout = experiment.Layout(root)
        layout.train_dir(exp.name).mkdir(parents=True)
        (layout.train_dir(exp.name) / experiment.RUN_FILE).write_text("{}")
        return {"train_seconds": 1.0}

    def evaluate(exp, *, root):
        seen["evaluate"] = exp
        return {"mAP50": 0.5, "per_class": {"ellipse": {"ap50": 0.4}}}

    monkeypatch.setattr(experiment, "train", train)
    monkeypatch.setattr(experiment, "evaluate", evaluate)
    argv = ["evaluate", "yolov8", "--data", "shapes", "--set", "epochs=1", "--set", "image_size=64"]
    assert cli.main(argv) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["experiment"] == "yolov8_shapes"
    assert out["metrics"] == {"mAP50": 0.5, "per_class.ellipse.ap50": 0.4}
    assert seen["train"].train["epochs"] == 1 and seen["train"].train["image_size"] == 64
    assert (tmp_path / "data/raw/shapes/records.json").exists()  # imported on first use


def test_describe_lists_every_option_with_its_default(capsys):
    assert cli.main(["train", "fast_rcnn", "--describe"]) == 0
    text = capsys.readouterr().err
    assert "train.epochs = 60" in text and "evaluate.regress = True" in text


def test_bad_input_is_one_line_naming_the_problem(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KDET_PROJECT_ROOT", str(tmp_path))
    cases = [
        (["train", "nope", "--data", "x"], "unknown model family 'nope'"),
        (["train", "yolov8", "--data", str(tmp_path / "missing")], "no such dataset name"),
        (["train", "yolov8", "--data", "shapes", "--set", "epoch=2"], "--set epoch"),
        (["train", "yolov8", "--data", "shapes", "--set", "image_size=100"], "multiples of 32"),
        (["train", "yolov8"], "--data: give a dataset"),
    ]
    for argv, message in cases:
        assert cli.main(argv) == 1, argv
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert err.startswith(f"kdet {argv[0]}: error: ") and message in err, err


def _kdet_imports(module: str, seen: set[str]) -> None:
    """Every kdet module ``module`` imports, transitively (by reading the source)."""
    if module in seen:
        return
    seen.add(module)
    path = ROOT / (module.replace(".", "/") + ".py")
    if not path.exists():
        path = ROOT / module.replace(".", "/") / "__init__.py"
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("kdet"):
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.startswith("kdet")]
        for name in names:
            file = ROOT / (name.replace(".", "/") + ".py")
            if file.exists() or (ROOT / name.replace(".", "/") / "__init__.py").exists():
                _kdet_imports(name, seen)


# stage -> the module its step runs (besides every family's, which all of them import)
STEP_MODULES = {
    "train": "kdet.experiment",
    "evaluate": "kdet.experiment",
    "finetune": "kdet.experiment",
    "export": "kdet.deploy.artifacts",
    "export_finetuned": "kdet.deploy.artifacts",
}


@pytest.mark.parametrize("stage", list(STEP_MODULES))
def test_stage_deps_cover_every_module_the_runner_imports(stage):
    deps = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"][stage]["do"]["deps"]
    seen: set[str] = set()
    _kdet_imports(STEP_MODULES[stage], seen)
    for family in family_names():
        from kdet.families import FAMILY_MODULES

        _kdet_imports(FAMILY_MODULES[family].partition(":")[0], seen)
    files = {
        m.replace(".", "/") + ".py" for m in seen if (ROOT / (m.replace(".", "/") + ".py")).exists()
    }
    files |= {
        m.replace(".", "/") + "/__init__.py" for m in seen if (ROOT / m.replace(".", "/")).is_dir()
    }
    uncovered = [
        f for f in files if not any(f == d or f.startswith(d.rstrip("/") + "/") for d in deps)
    ]
    assert not uncovered, f"dvc.yaml {stage} deps miss {sorted(uncovered)}"


def test_train_and_evaluate_stages_do_not_depend_on_deploy():
    """A change to kdet/deploy reruns export stages only, not every training."""
    stages_ = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for stage in ("train", "evaluate", "finetune", "evaluate_finetuned"):
        deps = stages_[stage]["do"]["deps"]
        assert not [d for d in deps if d.startswith("kdet/deploy")], stage


def test_dvc_generates_an_export_stage_for_every_row(tmp_path):
    """DVC itself expands the project's dvc.yaml: export@NAME for every experiments row,
    export_finetuned@NAME for every finetune row, after the row's evaluation."""
    import os
    import subprocess

    from tests.test_dvc_experiments import DVC

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    write_project(tmp_path, params)
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    subprocess.run([DVC, "init", "--no-scm", "-q"], cwd=tmp_path, env=env, check=True)
    listed = subprocess.run(
        [DVC, "stage", "list", "--name-only"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    expected = {f"export@{name}" for name in params["experiments"]}
    expected |= {f"export_finetuned@{name}" for name in params["finetune"]}
    assert expected == {s for s in listed if s.startswith("export")}
    name = next(iter(params["experiments"]))
    dag = subprocess.run(
        [DVC, "dag", "--dot", f"export@{name}"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"evaluate@{name}" in dag and f"train@{name}" in dag
