import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kdet import cli
from tests.conftest import mirror_path


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
    mirror_path()
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


def test_prepare_builds_the_tfds_dataset_of_a_fetch(tmp_path, capsys):
    raw = tmp_path / "shapes"
    assert cli.main(["fetch", "shapes", "--out", str(raw), "--num-images", "10"]) == 0
    capsys.readouterr()
    out = tmp_path / "prepared"
    assert cli.main(["prepare", "shapes", "--records", str(raw), "--out", str(out)]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["dataset"] == "kdet_shapes"
    assert sum(result["splits"].values()) == 10
    assert (out / "kdet_shapes").is_dir()
