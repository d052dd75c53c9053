"""The experiment runner (:mod:`kdet.experiment`) trains, evaluates and tracks every
registered family from a table row (tiny models on 64x64 images)."""

import dataclasses
import json
import os
import signal
from pathlib import Path

import keras
import mlflow
import pytest
import tensorflow as tf

from kdet import experiment
from kdet.datasets.records import RecordSet
from kdet.errors import KdetError
from kdet.experiment import Experiment, Layout, flat_metrics, read_history
from kdet.families import family_names, get_family
from kdet.models.rcnn.evaluation import evaluate_detector, pick_score_threshold
from kdet.models.rcnn.family import MODEL_FILE, PROPOSALS_FILE, VALIDATION_FILE
from kdet.models.rcnn.proposals import load_proposals
from kdet.training import TrainingInterrupted
from tests.runner_helpers import (
    dataset_for,
    make_shapes,
    mlflow_run,
    run,
    run_id,
    tiny_row,
)
from tests.test_metric_names import REPORTS, shared_names


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("KDET_PROJECT_ROOT", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    yield tmp_path
    keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("family", family_names())
def test_every_family_trains_evaluates_and_tracks_from_a_row(root, family):
    dataset = dataset_for(family, root)
    name = f"{family}_tiny"
    layout = Layout(root)
    shown = RecordSet.load(layout.records(dataset)).split("train").records[0]  # any split
    row = {**tiny_row(family, dataset, root), "showcase": [Path(shown.image).name]}
    exp, numbers, metrics = run(root, name, row)

    assert (layout.train_dir(name) / experiment.RUN_FILE).exists()
    assert json.loads(layout.train_metrics(name).read_text()) == pytest.approx(numbers)
    assert json.loads(layout.metrics(name).read_text()) == json.loads(json.dumps(metrics))
    assert (layout.plots(name) / "history.csv").exists()
    assert read_history(layout.plots(name) / "history.csv")["loss"]
    assert list(layout.plots(name).glob("*.png"))
    assert not layout.checkpoints(name).exists()  # a finished training cleans its backup

    assert shared_names(metrics, numbers) == REPORTS[family]
    headline = get_family(family).rank_by
    assert headline in metrics
    assert 0 <= metrics[headline] <= 1
    assert metrics["latency_ms"] > 0
    if headline == "mAP50":
        assert (layout.plots(name) / "pr_curve.csv").exists()
        records = RecordSet.load(layout.records(dataset))
        tested = {records.class_names[c] for r in records.split("test").records for c in r.classes}
        assert {f"AP50/{name}" for name in tested} <= set(metrics)

    info = json.loads((layout.train_dir(name) / experiment.RUN_FILE).read_text())
    assert (info["family"], info["dataset"], info["experiment"]) == (family, dataset, name)
    assert (root / "mlflow.db").exists()
    tracked = mlflow_run(info["run_id"])
    assert tracked.info.run_name == name
    assert tracked.data.tags["family"] == family
    logged = tracked.data.metrics
    assert "train_seconds" in logged
    for key, value in flat_metrics(metrics).items():
        assert logged[key] == pytest.approx(value), key
    if family == "sliding_window":  # the windows picked on validation, each candidate's mAP50
        candidate = "window_selection.candidates.window_32x32_step_32_scale_1.5_side_64.mAP50"
        assert {"window_selection.chosen.step", candidate, "operating_threshold"} <= set(logged)
    assert tracked.data.params["train.epochs"] == "1"

    served = tf.saved_model.load(str(layout.saved_model(name)))
    assert "serving_default" in served.signatures
    annotated = layout.plots(name) / "showcase" / f"{Path(shown.image).stem}.jpg"
    assert tf.io.decode_jpeg(tf.io.read_file(str(annotated))).shape[:2] == (
        shown.height,
        shown.width,
    )
    artifacts = mlflow.MlflowClient().list_artifacts(info["run_id"], "showcase")
    assert [a.path for a in artifacts] == [f"showcase/{annotated.name}"]


@pytest.mark.parametrize("family", ["rcnn", "fast_rcnn"])
def test_the_served_threshold_is_the_best_f1_on_the_held_out_images(root, family):
    dataset = dataset_for(family, root)
    name = f"{family}_tiny"
    exp, _, metrics = run(root, name, tiny_row(family, dataset, root))
    options = dict(exp.evaluate)
    assert options.pop("threshold_on_validation") and options["score_threshold"] == 0.05
    train_dir = Layout(root).train_dir(name)
    held = set(json.loads((train_dir / VALIDATION_FILE).read_text()))
    train = experiment.load_records(exp, Layout(root)).split("train")
    held_out = dataclasses.replace(train, records=[r for r in train.records if r.image in held])
    model = keras.saving.load_model(train_dir / MODEL_FILE)
    report = evaluate_detector(
        get_family(family).detector(model, **options),
        held_out,
        proposals=load_proposals(train_dir / PROPOSALS_FILE),
    )
    picked, f1 = pick_score_threshold(report, held_out)
    assert metrics["operating_threshold"] == pytest.approx(max(picked, 0.05))
    assert metrics["validation_f1"] == pytest.approx(f1)
    assert metrics["validation_images"] == len(held) > 0
    logged = mlflow_run(run_id(root, name)).data.metrics
    assert logged["operating_threshold"] == pytest.approx(metrics["operating_threshold"])
    assert logged["validation_f1"] == pytest.approx(f1)


def test_a_single_box_family_refuses_a_dataset_with_several_boxes(root):
    make_shapes(root, num_images=12)
    exp = Experiment.from_row("bbox", tiny_row("bbox_regressor", "shapes", root))
    with pytest.raises(ValueError, match=r"hold no box and \d+ hold several.*detector family"):
        experiment.train(exp, root=root)
    assert not Layout(root).train_dir("bbox").exists()


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (
            {"family": "yolov8", "dataset": "d", "train": {"epoch": 1}, "evaluate": {}},
            r"experiments\.r\.train\.epoch: unknown option 'epoch'",
        ),
        (
            {"family": "yolov8", "dataset": "d", "train": {}, "evaluate": {"decoder": {"x": 1}}},
            r"experiments\.r\.evaluate\.decoder\.x: unknown option 'x'",
        ),
        (
            {"family": "nope", "dataset": "d", "train": {}, "evaluate": {}},
            r"experiments\.r\.family: unknown model family 'nope'",
        ),
        ({"family": "yolov8", "dataset": "d", "evaluate": {}}, r"experiments\.r\.train: missing"),
        ({"family": "yolov8", "train": {}, "evaluate": {}}, r"experiments\.r\.dataset: missing"),
        (
            {"family": "yolov8", "dataset": "d", "train": {}, "evaluate": {}, "epochs": 3},
            r"experiments\.r\.epochs: unknown key",
        ),
        (
            {"family": "yolov8", "dataset": "d", "train": {"strategy": "tpu"}, "evaluate": {}},
            r"experiments\.r\.train\.strategy: 'tpu' is not allowed: one of",
        ),
        (
            {"family": "yolov8", "dataset": "d", "train": {}, "evaluate": {}, "showcase": "a.jpg"},
            r"experiments\.r\.showcase: 'a\.jpg' is not a list of image file names",
        ),
    ],
)
def test_a_bad_row_raises_naming_the_key(row, message):
    with pytest.raises(ValueError, match=message):
        Experiment.from_row("r", row)


@pytest.mark.parametrize(
    ("splits", "scored"),
    [(("train", "val"), "val"), (("train", "valid", "test"), "test"), (("train",), None)],
)
def test_the_held_out_split_is_scored_as_test(root, splits, scored):
    records = make_shapes(root, num_images=12)
    for index, record in enumerate(records.records):
        record.split = splits[index % len(splits)]
    records.save()
    exp = Experiment.from_row("held_out", tiny_row("yolov8", "shapes", root))
    if scored is None:
        with pytest.raises(ValueError, match=r"no held-out \(test, val, valid\) split"):
            experiment.load_records(exp, Layout(root))
        return
    loaded = experiment.load_records(exp, Layout(root))
    expected = [r.image for r in records.records if r.split == scored]
    assert [r.image for r in loaded.split("test").records] == expected
    assert [r.image for r in loaded.split("train").records] == [
        r.image for r in records.records if r.split == "train"
    ]


def test_a_showcase_image_not_in_the_dataset_fails_before_evaluating(root):
    make_shapes(root, num_images=12)
    row = {**tiny_row("yolov8", "shapes", root), "showcase": ["raccoon-1.jpg"]}
    exp = Experiment.from_row("shown", row)
    with pytest.raises(KdetError, match=r"showcase image 'raccoon-1\.jpg' \(row shown\)"):
        experiment.evaluate(exp, root=root)  # before "not trained yet"


def test_init_from_an_untrained_experiment_raises_naming_it(root):
    make_shapes(root, num_images=12)
    row = tiny_row("yolov8", "shapes", root, init_from="not_trained_yet")
    exp = Experiment.from_row("child", row, where="finetune")
    with pytest.raises(KdetError, match="starts from 'not_trained_yet'.*train@not_trained_yet"):
        experiment.train(exp, root=root)


def test_a_sliding_window_from_an_rcnn_classifier_carries_its_history(root):
    """The finetune row adds no epoch: its stage's plot output is the R-CNN's history."""
    make_shapes(root, num_images=12)
    experiment.train(Experiment.from_row("rcnn_tiny", tiny_row("rcnn", "shapes", root)), root=root)
    row = tiny_row("sliding_window", "shapes", root, init_from="rcnn_tiny")
    numbers = experiment.train(Experiment.from_row("windows", row, where="finetune"), root=root)

    plots = Layout(root).plots
    assert numbers["classifier_from"].endswith("rcnn_tiny/train")
    history = (plots("windows") / "history.csv").read_text()
    assert history == (plots("rcnn_tiny") / "history.csv").read_text()
    assert read_history(plots("windows") / "history.csv")["loss"]


def test_an_rcnn_row_mines_hard_negatives_from_another_rows_classifier(root):
    """init_from + hard_negative_mining: only the mining round trains, from that classifier."""
    make_shapes(root, num_images=12)
    experiment.train(Experiment.from_row("rcnn_tiny", tiny_row("rcnn", "shapes", root)), root=root)
    row = tiny_row("rcnn", "shapes", root, init_from="rcnn_tiny")
    row["train"]["hard_negative_mining"] = {"rounds": 1, "epochs": 1, "score_threshold": 0.0}
    numbers = experiment.train(Experiment.from_row("mined", row, where="finetune"), root=root)

    assert numbers["mined_negatives.round_1"] > 0
    lines = (Layout(root).plots("mined") / "history.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in lines[1:]] == ["1"]  # after rcnn_tiny's epoch 0
    fast = tiny_row("fast_rcnn", "shapes", root, init_from="rcnn_tiny")
    with pytest.raises(ValueError, match="'fast_rcnn' cannot start from another experiment"):
        experiment.train(Experiment.from_row("fast", fast, where="finetune"), root=root)


def test_evaluate_before_train_raises(root):
    make_shapes(root, num_images=12)
    exp = Experiment.from_row("untrained", tiny_row("yolov8", "shapes", root))
    with pytest.raises(KdetError, match="not trained yet"):
        experiment.evaluate(exp, root=root)


def test_registered_model_names():
    row = {"dataset": "caltech101", "train": {}, "evaluate": {}}
    assert Experiment.from_row("a", {**row, "family": "yolov8"}).registered_model_name() == (
        "caltech101"
    )
    assert Experiment.from_row("b", {**row, "family": "multiclass"}).registered_model_name() == (
        "caltech101_multiclass"
    )
    named = {**row, "family": "multiclass", "registered_model": "mine"}
    assert Experiment.from_row("c", named).registered_model_name() == "mine"


def test_an_interrupted_training_resumes_at_its_epoch_in_the_same_run(root, monkeypatch):
    """SIGINT at the end of epoch 1 of 2: ``train`` raises, keeps the backup and the run id;
    the next ``train`` resumes at epoch 1 and logs to the same MLflow run."""
    import kdet.models.single_box.train as family_train

    make_shapes(root, "shapes_one", one_box=True, num_images=16)
    row = tiny_row("bbox_regressor", "shapes_one", root)
    row["train"]["epochs"] = 2
    exp = Experiment.from_row("resumed", row)
    real_fit = family_train.fit
    started = []

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                os.kill(os.getpid(), signal.SIGINT)

    def fit(model, *args, callbacks=(), **kwargs):
        extra = [Interrupt()] if not started else []
        history = None
        try:
            history = real_fit(model, *args, callbacks=[*callbacks, *extra], **kwargs)
        finally:
            started.append(history.epoch[0] if history else None)
        return history

    monkeypatch.setattr(family_train, "fit", fit)
    with pytest.raises(TrainingInterrupted, match="SIGINT stopped training after epoch 1 of 2"):
        experiment.train(exp, root=root)
    layout = Layout(root)
    checkpoints = layout.checkpoints("resumed")
    (key,) = [p for p in checkpoints.iterdir()]
    assert (key / "backup").exists()
    first_run = (key / "mlflow_run_id").read_text().strip()
    assert not layout.train_dir("resumed").exists()

    experiment.train(exp, root=root)
    assert started == [None, 1]  # the second call started at epoch 1
    assert run_id(root, "resumed") == first_run
    assert not checkpoints.exists()
    history = read_history(layout.plots("resumed") / "history.csv")
    assert len(history["loss"]) == 2
    tracked = mlflow_run(first_run)
    assert tracked.data.params["train.epochs"] == "2"
    assert tracked.info.status == "FINISHED"


def test_layout_paths(tmp_path):
    layout = Layout(Path("/p"))
    assert layout.train_dir("x") == Path("/p/data/models/x/train")
    assert layout.saved_model("x") == Path("/p/data/models/x/saved_model")
    assert layout.metrics("x") == Path("/p/data/metrics/x.json")
    assert layout.train_metrics("x") == Path("/p/data/metrics/x_train.json")
    assert layout.plots("x") == Path("/p/data/plots/x")
    assert layout.records("d") == Path("/p/data/raw/d")
