import subprocess
from pathlib import Path

import matplotlib
import mlflow

from kdet import tracking

matplotlib.use("Agg")


def test_default_uri_is_absolute_and_sees_through_dvc_experiment_copies(tmp_path, monkeypatch):
    monkeypatch.delenv("KDET_PROJECT_ROOT", raising=False)
    project = tmp_path / "proj"
    copy = project / ".dvc" / "tmp" / "exps" / "tmpabc123"
    copy.mkdir(parents=True)
    (project / "dvc.yaml").write_text("stages: {}\n")
    (copy / "dvc.yaml").write_text("stages: {}\n")
    monkeypatch.chdir(copy)
    assert tracking.default_tracking_uri() == f"sqlite:///{project.resolve()}/mlflow.db"


def test_env_uri_wins(monkeypatch, tmp_path):
    uri = f"sqlite:///{tmp_path}/other.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    assert tracking.configure() == uri


def test_run_is_tagged_and_logs_params_metrics_figures(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("KDET_PROJECT_ROOT", str(tmp_path))
    monkeypatch.setenv("DVC_STAGE", "train_toy")
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run(
        [
            "git",
            "-C",
            str(tmp_path),
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "init",
        ],
        check=True,
    )
    import matplotlib.pyplot as plt

    with tracking.start_run("toy", run_name="r1", params={"train": {"lr": 0.1}}) as run:
        tracking.log_metrics({"mAP50": 0.5, "note": "skipped"}, step=0)
        fig, ax = plt.subplots()
        ax.plot([0, 1])
        tracking.log_figure(fig, "curve.png")
        plt.close(fig)
    assert (tmp_path / "mlflow.db").exists()
    finished = mlflow.get_run(run.info.run_id)
    assert finished.data.params == {"train.lr": "0.1"}
    assert finished.data.metrics == {"mAP50": 0.5}
    assert finished.data.tags["dvc_stage"] == "train_toy"
    assert len(finished.data.tags["mlflow.source.git.commit"]) == 40
    artifacts = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="figures")
    assert (tmp_path / "mlartifacts").exists()
    assert (Path(artifacts) / "curve.png").exists()
