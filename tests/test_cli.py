import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kdet import cli
from tests.conftest import mirror_or_skip


def test_fetch_shapes_prints_one_json_summary(tmp_path, capsys):
    out = tmp_path / "shapes"
    assert (
        cli.main(
            [
                "fetch",
                "shapes",
                "--out",
                str(out),
                "--num-images",
                "6",
                "--image-size",
                "64",
                "--seed",
                "3",
            ]
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["images"] == 6
    assert summary["boxes"] == sum(summary["classes"].values()) > 0
    assert (out / "records.json").exists()


def test_fetch_raccoon_from_the_mirror_with_the_console_script(tmp_path):
    mirror_or_skip()
    kdet = shutil.which("kdet", path=str(Path(sys.executable).parent))
    if kdet is None:
        pytest.skip("the kdet console script is not installed (pip install -e .)")
    result = subprocess.run(
        [kdet, "fetch", "raccoon", "--out", str(tmp_path / "raccoon")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {
        "images": 200,
        "boxes": 217,
        "classes": {"raccoon": 217},
    }


def test_fetch_error_is_one_clear_line(tmp_path, capsys):
    code = cli.main(
        [
            "fetch",
            "open_images",
            "--out",
            str(tmp_path),
            "--classes",
            "Persn",
            "--mirror",
            str(tmp_path / "no-mirror"),
        ]
    )
    assert code == 1
    assert "kdet fetch: error:" in capsys.readouterr().err


def echo_arguments(*, epochs: int = 1, image_size=(64, 64), weights=None) -> dict:
    """Return the arguments it was called with (a stand-in for a family's train stage)."""
    return {"epochs": epochs, "image_size": list(image_size), "weights": weights}


@pytest.fixture
def toy_family(monkeypatch):
    from kdet.families import FAMILIES, Family

    family = Family(
        summary="echoes its arguments",
        train="tests.test_cli:echo_arguments",
        params_groups={"train": "train.toy"},
    )
    monkeypatch.setitem(FAMILIES, "toy", family)
    return family


def test_train_reads_the_stage_params_then_overrides(toy_family, tmp_path, capsys, monkeypatch):
    (tmp_path / "params.yaml").write_text("train:\n  toy:\n    epochs: 5\n    weights: w.h5\n")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["train", "toy", "--set", "image_size=[32, 48]", "--set", "weights=null"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "epochs": 5,
        "image_size": [32, 48],
        "weights": None,
    }


def test_describe_and_help_list_families(toy_family, capsys):
    assert cli.main(["train", "toy", "--describe"]) == 0
    assert "echo_arguments(*, epochs: int = 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    assert "toy              echoes its arguments" in capsys.readouterr().out


def test_unknown_family_or_missing_step_is_a_clear_error(toy_family, capsys):
    assert cli.main(["train", "nope"]) == 1
    assert "unknown model family 'nope'; available: toy" in capsys.readouterr().err
    assert cli.main(["evaluate", "toy"]) == 1
    assert "this family has no 'evaluate' step" in capsys.readouterr().err


def test_bad_assignment_is_rejected(toy_family, capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "toy", "--set", "epochs"])
    assert "expected KEY=VALUE" in capsys.readouterr().err
