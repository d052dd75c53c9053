"""Test-wide settings: quiet TensorFlow, an absolute KDET_MIRROR, a throwaway MLflow store."""

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if os.environ.get("KDET_MIRROR") and "://" not in os.environ["KDET_MIRROR"]:
    # Tests may chdir; a relative mirror path must keep pointing at the same folder.
    os.environ["KDET_MIRROR"] = os.path.abspath(os.environ["KDET_MIRROR"])


@pytest.fixture(autouse=True)
def isolated_mlflow(tmp_path, monkeypatch):
    """Every test logs to its own sqlite store, never to the project's mlflow.db."""
    monkeypatch.setenv("KDET_PROJECT_ROOT", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def mirror_or_skip() -> str:
    """The dataset mirror folder/URL, or skip the test when KDET_MIRROR is unset."""
    mirror = os.environ.get("KDET_MIRROR")
    if not mirror:
        pytest.skip(
            "KDET_MIRROR is not set (point it at the dataset mirror, e.g. ../shared/mirror)"
        )
    return mirror
