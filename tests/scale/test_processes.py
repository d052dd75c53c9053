"""Every subprocess environment the helpers build keeps telemetry off."""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import NO_TELEMETRY
from tests.scale.processes import child_env, project_env, started, wait_all

PRINT_ENV = (
    "import json, os, sys; "
    f"json.dump({{k: os.environ.get(k) for k in {sorted(NO_TELEMETRY)!r}}}, sys.stdout)"
)


def test_the_test_process_itself_has_telemetry_off():
    assert {name: os.environ.get(name) for name in NO_TELEMETRY} == NO_TELEMETRY


@pytest.mark.parametrize("unset", [False, True], ids=["inherited", "unset-in-the-test"])
def test_every_helper_environment_has_telemetry_off(tmp_path, monkeypatch, unset):
    if unset:  # the helpers set the variables themselves, not only pass them on
        for name in NO_TELEMETRY:
            monkeypatch.delenv(name, raising=False)
    envs = {
        "child_env": child_env(),
        "child_env(extra)": child_env(TF_CPP_MIN_LOG_LEVEL="3"),
        "project_env": project_env(tmp_path / "project", tmp_path / "scratch"),
    }
    for name, env in envs.items():
        assert {k: env.get(k) for k in NO_TELEMETRY} == NO_TELEMETRY, name
        # ... and a process started with it sees them (its output goes to the log).
        log = tmp_path / f"{name}.log"
        with started([sys.executable, "-c", PRINT_ENV], log, env=env, cwd=tmp_path) as process:
            wait_all([process], [log], timeout=300)
        assert json.loads(log.read_text()) == NO_TELEMETRY, name


def test_a_plain_subprocess_inherits_telemetry_off():
    """Tests that pass no ``env`` (or copy ``os.environ``) rely on conftest's settings."""
    answer = subprocess.run(
        [sys.executable, "-c", PRINT_ENV], capture_output=True, text=True, check=True
    )
    assert json.loads(answer.stdout) == NO_TELEMETRY
