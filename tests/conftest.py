"""Test-wide settings: no telemetry, quiet TensorFlow, the dataset mirror, a throwaway
MLflow store."""

import os
import signal
from pathlib import Path

import pytest

# No test may reach a non-loopback address: DVC analytics and MLflow telemetry are off
# for this process and, through the inherited environment, for every subprocess. (MLflow
# reads ``DO_NOT_TRACK`` only when it is "true", hence its own variable as well.)
NO_TELEMETRY = {
    "DVC_NO_ANALYTICS": "1",
    "DO_NOT_TRACK": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
}
os.environ.update(NO_TELEMETRY)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# A suite started in the background by a shell without job control inherits SIGINT
# ignored, and so would every process it starts: the tests that interrupt a training or a
# ``dvc repro`` as Ctrl-C does need its default action back (exec resets a handler, not an
# ignore).
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

REPO_ROOT = Path(__file__).resolve().parents[1]
# The mirror beside the project checkout: CHECKOUT/../shared/mirror.
DEFAULT_MIRROR = (REPO_ROOT / ".." / "shared" / "mirror").resolve()

if not os.environ.get("KDET_MIRROR") and DEFAULT_MIRROR.is_dir():
    # Code under test (and its subprocesses) reads KDET_MIRROR: point it at the default.
    os.environ["KDET_MIRROR"] = str(DEFAULT_MIRROR)
if os.environ.get("KDET_MIRROR") and "://" not in os.environ["KDET_MIRROR"]:
    # Tests may chdir; a relative mirror path must keep pointing at the same folder.
    os.environ["KDET_MIRROR"] = os.path.abspath(os.environ["KDET_MIRROR"])
# The mirror as it was when the tests started: a test deleting KDET_MIRROR for itself
# (monkeypatch) can still ask for the real one.
_MIRROR = os.environ.get("KDET_MIRROR", "")


@pytest.fixture(autouse=True)
def isolated_mlflow(tmp_path, monkeypatch):
    """Every test logs to its own sqlite store, never to the project's mlflow.db."""
    monkeypatch.setenv("KDET_PROJECT_ROOT", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    yield
    import mlflow

    # A test that logs outside any run makes MLflow start one implicitly; end it so the next
    # test's runs do not collide with it.
    while mlflow.active_run() is not None:
        mlflow.end_run()


def _missing(reason: str):
    """Fail in CI (``CI`` set), where a missing mirror is a broken setup; skip elsewhere."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (tests needing the mirror fail in CI instead of skipping)")
    pytest.skip(reason)


def mirror_path() -> str:
    """The dataset mirror: a folder or a base URL.

    ``KDET_MIRROR`` when set, else ``shared/mirror`` beside the project checkout
    (``CHECKOUT/../shared/mirror``). When there is none, the calling test fails in CI
    (the ``CI`` environment variable is set) and is skipped elsewhere.
    """
    mirror = os.environ.get("KDET_MIRROR") or _MIRROR
    if not mirror:
        _missing(f"no dataset mirror: KDET_MIRROR is unset and {DEFAULT_MIRROR} is not a folder")
    if "://" not in mirror and not os.path.isdir(mirror):
        _missing(f"no dataset mirror: KDET_MIRROR={mirror} is not a folder")
    return mirror


def mirror_folder() -> Path:
    """:func:`mirror_path` for tests reading the mirror's files directly; skipped when the
    mirror is a URL."""
    mirror = mirror_path()
    if "://" in mirror:
        pytest.skip(f"this test reads the mirror as a folder, KDET_MIRROR is {mirror}")
    return Path(mirror)


def pytest_collection_modifyitems(items):
    """Group the tests for pytest-xdist's ``--dist loadgroup`` (``pyproject.toml``): the
    tests that use one of the suite's module- or session-scoped fixtures run on one worker
    (named by the module or folder defining the widest such fixture), so each is built once;
    every other test goes to whichever worker is free."""
    for item in items:
        shared = [
            definition.baseid
            for definitions in item._fixtureinfo.name2fixturedefs.values()
            for definition in definitions
            if definition.scope in ("module", "package", "session") and definition.baseid
        ]
        if shared:
            item.add_marker(pytest.mark.xdist_group(min(shared, key=len)))
