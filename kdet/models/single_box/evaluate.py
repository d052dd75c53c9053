"""Evaluation of single-box models next to the mean-box baseline, and their figures.

On Caltech-101 airplanes, always predicting the training set's mean box already scores a
high mean IoU, so every number here comes with the baseline's number on the same images:
the baseline gives each test image the mean training box of its (true) class.

Example:
    >>> evaluation = evaluate_single_box(model, data, class_names=["airplanes"],
    ...                                  train_rows=train, test_rows=test)  # doctest: +SKIP
    >>> evaluation.metrics["mean_iou"], evaluation.metrics["baseline_mean_iou"]  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from kdet.metrics import box_regression_metrics, mean_box_baseline
from kdet.models.single_box.data import SingleBoxData


@dataclasses.dataclass
class Evaluation:
    """What :func:`evaluate_single_box` returns.

    Attributes:
        metrics: JSON-ready numbers (see :func:`evaluate_single_box`).
        rows: the evaluated rows of the data.
        true_boxes: relative ``xyxy`` ``(N, 4)``.
        pred_boxes: relative ``xyxy`` ``(N, 4)``.
        true_classes: ids into the model's class names ``(N,)``.
        pred_classes: predicted ids ``(N,)`` (the only class for a box-only model).
        scores: probability of the predicted class ``(N,)`` (1 for a box-only model).
        iou: per-image IoU ``(N,)``.
        confusion: ``(C, C)`` counts, rows true and columns predicted classes.
    """

    metrics: dict
    rows: np.ndarray
    true_boxes: np.ndarray
    pred_boxes: np.ndarray
    true_classes: np.ndarray
    pred_classes: np.ndarray
    scores: np.ndarray
    iou: np.ndarray
    confusion: np.ndarray


def predict_single_box(model: keras.Model, inputs: np.ndarray, batch_size: int = 32) -> dict:
    """Run ``model`` (or its head on features) batch by batch; NumPy outputs."""
    batches = (
        tf.data.Dataset.from_tensor_slices(inputs)
        .batch(batch_size)
        .map(lambda x: tf.cast(x, tf.float32))
    )
    outputs = model.predict(batches, verbose=0)
    return {name: np.asarray(value, np.float32) for name, value in outputs.items()}


def _box_numbers(true, pred, prefix=""):
    numbers = box_regression_metrics(true, pred, "rel_xyxy")
    return {
        f"{prefix}mean_iou": numbers["mean_iou"],
        f"{prefix}iou50_share": numbers["iou_at_50"],
        f"{prefix}iou75_share": numbers["iou_at_75"],
    }


def evaluate_single_box(
    model: keras.Model,
    data: SingleBoxData,
    *,
    class_names: Sequence[str],
    train_rows: np.ndarray,
    test_rows: np.ndarray,
    batch_size: int = 32,
    features: np.ndarray | None = None,
) -> Evaluation:
    """Score a single-box model on ``test_rows`` against the mean-box baseline.

    Args:
        model: the model (images -> outputs), or its head when ``features`` is given.
        data: the dataset at the model's input size.
        class_names: the model's classes (its ids index this list).
        train_rows: rows whose boxes define the baseline's mean boxes.
        test_rows: rows to evaluate.
        batch_size: images per forward pass.
        features: backbone features of every row of ``data`` to feed a head instead.

    Returns:
        An :class:`Evaluation` whose ``metrics`` hold ``test_images``, ``mean_iou``,
        ``iou50_share``, ``iou75_share`` and the same three with a ``baseline_`` prefix,
        ``per_class`` (those numbers per class) and, with a class head,
        ``class_accuracy``.
    """
    class_names = list(class_names)
    to_model = {data.class_names.index(name): i for i, name in enumerate(class_names)}
    true_classes = np.array([to_model[c] for c in data.classes[test_rows]], np.int32)
    train_classes = np.array([to_model.get(c, -1) for c in data.classes[train_rows]], np.int32)
    inputs = features[test_rows] if features is not None else data.images[test_rows]
    outputs = predict_single_box(model, inputs, batch_size)
    pred_boxes = outputs["bounding_box"]
    true_boxes = data.boxes[test_rows]
    if "class_label" in outputs:
        pred_classes = outputs["class_label"].argmax(axis=-1).astype(np.int32)
        scores = outputs["class_label"].max(axis=-1)
    else:
        pred_classes = np.zeros(len(test_rows), np.int32)
        scores = np.ones(len(test_rows), np.float32)

    baseline_boxes = np.zeros_like(true_boxes)
    per_class = {}
    for class_id, name in enumerate(class_names):
        test_mask = true_classes == class_id
        train_mask = train_classes == class_id
        if not test_mask.any():
            continue
        baseline = mean_box_baseline(data.boxes[train_rows][train_mask], true_boxes[test_mask])
        baseline_boxes[test_mask] = baseline["mean_box"]
        per_class[name] = {
            "test_images": int(test_mask.sum()),
            **_box_numbers(true_boxes[test_mask], pred_boxes[test_mask]),
            **_box_numbers(true_boxes[test_mask], baseline_boxes[test_mask], "baseline_"),
        }
    overall = box_regression_metrics(true_boxes, pred_boxes, "rel_xyxy")
    metrics = {
        "test_images": len(test_rows),
        **_box_numbers(true_boxes, pred_boxes),
        **_box_numbers(true_boxes, baseline_boxes, "baseline_"),
    }
    num_classes = len(class_names)
    confusion = np.bincount(
        true_classes * num_classes + pred_classes, minlength=num_classes**2
    ).reshape(num_classes, num_classes)
    if "class_label" in outputs:
        metrics["class_accuracy"] = float(np.mean(pred_classes == true_classes))
    metrics["per_class"] = per_class
    return Evaluation(
        metrics=metrics,
        rows=np.asarray(test_rows),
        true_boxes=true_boxes,
        pred_boxes=pred_boxes,
        true_classes=true_classes,
        pred_classes=pred_classes,
        scores=scores,
        iou=overall["per_image_iou"],
        confusion=confusion,
    )


def prediction_grid(
    data: SingleBoxData,
    evaluation: Evaluation,
    class_names: Sequence[str],
    columns: int = 4,
    rows: int = 3,
):
    """A matplotlib figure of test images with true (green) and predicted (red) boxes.

    The images are those of ``evaluation.rows``, evenly spaced, titled with the predicted
    class, its score and the IoU.
    """
    import matplotlib.pyplot as plt

    count = min(columns * rows, len(evaluation.rows))
    picks = np.linspace(0, len(evaluation.rows) - 1, count).round().astype(int)
    fig, axes = plt.subplots(rows, columns, figsize=(3 * columns, 3 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, k in zip(axes.ravel(), picks, strict=False):
        image = data.images[evaluation.rows[k]]
        height, width = image.shape[:2]
        ax.imshow(image)
        scale = np.array([width, height, width, height])
        for box, color in ((evaluation.true_boxes[k], "lime"), (evaluation.pred_boxes[k], "red")):
            x1, y1, x2, y2 = box * scale
            ax.add_patch(
                plt.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, color=color, linewidth=2)
            )
        name = class_names[evaluation.pred_classes[k]]
        ax.set_title(f"{name} {evaluation.scores[k]:.2f} IoU {evaluation.iou[k]:.2f}", fontsize=9)
    fig.suptitle("test images: true (green) and predicted (red) boxes")
    fig.tight_layout()
    return fig


def confusion_figure(confusion: np.ndarray, class_names: Sequence[str]):
    """A matplotlib figure of a confusion matrix (rows true, columns predicted)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.2 * len(class_names) + 2, 1.2 * len(class_names) + 1.5))
    ax.imshow(confusion, cmap="Blues")
    ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for (i, j), count in np.ndenumerate(confusion):
        ax.text(j, i, str(count), ha="center", va="center")
    fig.tight_layout()
    return fig
