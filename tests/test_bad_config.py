"""Every configuration value a user can get wrong stops before any work, with one line
naming the key, the value and what is allowed. The README's table is rendered from CASES
(`python -m tests.test_bad_config` prints it) and a test keeps the two equal."""

from pathlib import Path

import pytest

from kdet.experiment import Experiment

README = Path(__file__).resolve().parents[1] / "README.md"
BEGIN, END = "<!-- bad-config table: begin -->", "<!-- bad-config table: end -->"


def row(family="yolov8", train=None, evaluate=None, **extra):
    return {
        "family": family,
        "dataset": "d",
        "train": train or {},
        "evaluate": evaluate or {},
        **extra,
    }


# (what the user wrote, the row, the start of the one-line error)
CASES = [
    (
        "zero epochs",
        row(train={"epochs": 0}),
        "experiments.x.train.epochs: 0 is not allowed: a whole number >= 1",
    ),
    (
        "negative epochs",
        row("rcnn", train={"epochs": -3}),
        "experiments.x.train.epochs: -3 is not allowed",
    ),
    (
        "epochs as text",
        row(train={"epochs": "ten"}),
        "experiments.x.train.epochs: 'ten' is a str; expected a int",
    ),
    (
        "learning rate 0",
        row("fast_rcnn", train={"learning_rate": 0}),
        "experiments.x.train.learning_rate: 0 is not allowed: a number > 0",
    ),
    (
        "learning rate < 0 (nested)",
        row("multiclass", train={"model": {"learning_rate": -1}}),
        "experiments.x.train.model.learning_rate: -1 is not allowed",
    ),
    (
        "an image size YOLOv8 cannot take",
        row(train={"image_size": 100}),
        "experiments.x.train.image_size: 100 is not allowed: YOLOv8 needs multiples of 32",
    ),
    (
        "a negative image size",
        row("fast_rcnn", train={"image_size": -5}),
        "experiments.x.train.image_size: -5 is not allowed",
    ),
    (
        "unknown backbone",
        row("rcnn", train={"backbone": "resnet"}),
        "experiments.x.train.backbone: 'resnet' is not allowed: one of 'vgg16', 'mobilenet_v2'",
    ),
    (
        "unknown R-CNN labelling rule",
        row("rcnn", train={"labelling": "papers"}),
        "experiments.x.train.labelling: 'papers' is not allowed: one of 'paper', 'tutorial'",
    ),
    (
        "a paper-rule fraction outside [0, 1] (nested)",
        row("rcnn", train={"paper": {"hard_negative_fraction": 2}}),
        "experiments.x.train.paper.hard_negative_fraction: 2 is not allowed: a number in [0, 1]",
    ),
    (
        "a negative number of hard-negative mining rounds",
        row("rcnn", train={"hard_negative_mining": {"rounds": -1}}),
        "experiments.x.train.hard_negative_mining.rounds: -1 is not allowed: a whole number >= 0",
    ),
    (
        "unknown YOLOv8 size",
        row(train={"backbone_size": "xxl"}),
        "experiments.x.train.backbone_size: 'xxl' is not allowed: one of",
    ),
    (
        "unknown strategy",
        row(train={"strategy": "tpu"}),
        "experiments.x.train.strategy: 'tpu' is not allowed: one of 'auto', 'default', 'mirrored'",
    ),
    (
        "a precision YOLOv8 cannot train in",
        row(train={"precision": "mixed_bfloat16"}),
        "experiments.x.train.precision: 'mixed_bfloat16' is not allowed: one of 'auto', 'float32'",
    ),
    (
        "threshold outside [0, 1]",
        row("rcnn", evaluate={"score_threshold": 1.5}),
        "experiments.x.evaluate.score_threshold: 1.5 is not allowed: a number in [0, 1]",
    ),
    (
        "validation fraction 1",
        row("rcnn", train={"validation_fraction": 1.0}),
        "experiments.x.train.validation_fraction: 1.0 is not allowed: a number in [0, 1)",
    ),
    (
        "misspelt option",
        row(train={"epoch": 3}),
        "experiments.x.train.epoch: unknown option 'epoch' (allowed: backbone_size, batch_size",
    ),
    (
        "unknown family",
        row("yolo9"),
        "experiments.x.family: unknown model family 'yolo9'; available: bbox_regressor",
    ),
    (
        "missing evaluate group",
        {"family": "yolov8", "dataset": "d", "train": {}},
        "experiments.x.evaluate: missing (every row has family, dataset, train, evaluate",
    ),
    (
        "unknown row key",
        row(epochs=3),
        "experiments.x.epochs: unknown key (allowed: family, dataset, train, evaluate, init_from",
    ),
    (
        "options not a mapping",
        row(train=[1, 2]),
        "experiments.x.train: expected a mapping of options",
    ),
]


@pytest.mark.parametrize("what, given, message", CASES, ids=[c[0] for c in CASES])
def test_bad_configuration_stops_with_one_line(what, given, message):
    with pytest.raises(ValueError) as caught:
        Experiment.from_row("x", given)
    text = str(caught.value)
    assert "\n" not in text and text.startswith(message), text


def render_table() -> str:
    lines = [
        "| configuration | error (one line; `kdet` prints it after `kdet COMMAND: error:`) |",
        "|---|---|",
    ]
    for what, given, _ in CASES:
        with pytest.raises(ValueError) as caught:
            Experiment.from_row("x", given)
        lines.append(f"| {what} | `{caught.value}` |")
    return "\n".join(lines)


def test_readme_table_is_rendered_from_the_cases():
    text = README.read_text()
    assert BEGIN in text and END in text, "README lacks the bad-config table markers"
    table = text.split(BEGIN)[1].split(END)[0].strip()
    assert table == render_table(), "README table is stale: run python -m tests.test_bad_config"


if __name__ == "__main__":
    print(render_table())
