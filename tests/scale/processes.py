"""Child processes for the scale-out tests: bounded in time and always killed."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

from tests.conftest import NO_TELEMETRY

REPO_ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


def child_env(**extra: str) -> dict[str, str]:
    """The test's environment with this checkout's ``kdet`` first on ``PYTHONPATH``, and
    DVC analytics and MLflow telemetry off (:data:`tests.conftest.NO_TELEMETRY`) whatever
    the test's own environment says."""
    env = dict(os.environ)
    env.update(NO_TELEMETRY)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env["PATH"] = os.pathsep.join((str(VENV_BIN), env.get("PATH", "")))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.update(extra)
    return env


def project_env(project, scratch) -> dict[str, str]:
    """:func:`child_env` for git and DVC commands in a temporary ``project``: DVC's and
    git's user, site and system settings live under ``scratch``, commits have a test
    author, and the kdet checkout's own MLflow store is not inherited."""
    env = child_env(
        PYTHONPATH=str(project),
        DVC_NO_ANALYTICS="1",
        DVC_SITE_CACHE_DIR=str(scratch / "dvc-site-cache"),
        DVC_GLOBAL_CONFIG_DIR=str(scratch / "dvc-global"),
        DVC_SYSTEM_CONFIG_DIR=str(scratch / "dvc-system"),
        GIT_CONFIG_GLOBAL=str(scratch / "gitconfig"),
        GIT_CONFIG_NOSYSTEM="1",
        GIT_AUTHOR_NAME="kdet test",
        GIT_AUTHOR_EMAIL="test@kdet.invalid",
        GIT_COMMITTER_NAME="kdet test",
        GIT_COMMITTER_EMAIL="test@kdet.invalid",
    )
    for name in ("KDET_PROJECT_ROOT", "MLFLOW_TRACKING_URI"):
        env.pop(name, None)
    return env


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def kill(process: subprocess.Popen) -> None:
    """Kill ``process`` and everything in its process group (it leads its own group)."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


@contextlib.contextmanager
def started(command: Sequence[str], log: Path, **popen_kwargs) -> Iterator[subprocess.Popen]:
    """Start ``command`` in its own process group, output to ``log``; kill it on exit."""
    with open(log, "wb") as out:
        process = subprocess.Popen(
            list(command),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **popen_kwargs,
        )
    try:
        yield process
    finally:
        kill(process)


def wait_all(processes: Sequence[subprocess.Popen], logs: Sequence[Path], timeout: float) -> None:
    """Wait for every process to exit 0 within ``timeout`` seconds in all, else fail with
    the tail of their logs (the caller's ``started`` kills what is left)."""
    deadline = time.monotonic() + timeout
    for process in processes:
        try:
            code = process.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            code = None
        if code != 0:
            tails = "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in logs)
            state = "timed out" if code is None else f"exited with {code}"
            raise AssertionError(f"{process.args} {state}\n{tails}")


def wait_http(url: str, process: subprocess.Popen, log: Path, timeout: float) -> None:
    """Poll ``url`` until it answers 200; fail early if ``process`` dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(
                f"{process.args} exited with {process.returncode}:\n{log.read_text()[-3000:]}"
            )
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as response:
            if response.status == 200:
                return
        time.sleep(0.5)
    raise AssertionError(f"{url} did not answer in {timeout} s:\n{log.read_text()[-3000:]}")
