"""Train two or more YOLOv8 recipes side by side on the same data and compare mAP.

Every recipe gets the same training and test records, epochs, input size, batch size,
backbone and seed; only the recipe differs. Both models are evaluated with the same
decoder thresholds (confidence 0.001, so the PR curve is complete), so the comparison is
about training, not about where a decoder cuts. :func:`compare_budgets` repeats the
comparison at several epoch budgets (each a full run with its own schedule), because the
keras.io example trains only a few epochs and the gap between recipes depends on the budget.

Example:
    >>> results = compare_recipes(train, test, image_size=256, epochs=10)  # doctest: +SKIP
    >>> results["kdet"]["mAP50"], results["keras_io"]["mAP50"]            # doctest: +SKIP
    >>> table = compare_budgets(train, test, epochs=(5, 10, 20))          # doctest: +SKIP
    >>> [(row["epochs"], row["mAP50_ratio"]) for row in table]            # doctest: +SKIP
"""

from __future__ import annotations

import csv
import os
import time
from collections.abc import Callable, Sequence

from matplotlib.figure import Figure

from kdet.datasets.records import RecordSet
from kdet.models.yolov8.evaluate import evaluate_yolov8
from kdet.models.yolov8.train import train_yolov8


def compare_recipes(
    train_records: RecordSet,
    test_records: RecordSet,
    *,
    recipes=("keras_io", "kdet"),
    image_size=256,
    batch_size: int = 8,
    epochs: int = 10,
    backbone_size: str = "xs",
    seed: int = 0,
    precision: str = "auto",
    strategy: str = "auto",
    decoder: dict | None = None,
) -> dict[str, dict[str, float]]:
    """Train each recipe once with identical settings; returns its metrics by recipe name
    (``mAP50``, ``mAP``, per-class AP, ``final_loss``, ``train_seconds``). ``strategy`` is
    the ``tf.distribute`` strategy of both trainings (see :func:`train_yolov8`)."""
    decoder = decoder or {"confidence_threshold": 0.001, "iou_threshold": 0.6}
    results = {}
    for recipe in recipes:
        start = time.perf_counter()
        model, history = train_yolov8(
            train_records,
            None,
            recipe=recipe,
            image_size=image_size,
            batch_size=batch_size,
            epochs=epochs,
            backbone_size=backbone_size,
            seed=seed,
            precision=precision,
            strategy=strategy,
        )
        seconds = time.perf_counter() - start
        result, _ = evaluate_yolov8(
            model, test_records, image_size=image_size, batch_size=batch_size, **decoder
        )
        results[recipe] = {
            **result.as_metrics(),
            "final_loss": history["loss"][-1],
            "train_seconds": seconds,
        }
    return results


def compare_budgets(
    train_records: RecordSet,
    test_records: RecordSet,
    *,
    epochs: Sequence[int] = (5, 10, 20),
    baseline: str = "keras_io",
    candidate: str = "kdet",
    on_result: Callable[[int, str, dict], None] | None = None,
    **options,
) -> list[dict]:
    """:func:`compare_recipes` of ``baseline`` and ``candidate`` at each epoch budget.

    Args:
        train_records, test_records: as in :func:`compare_recipes`.
        epochs: the budgets; each is a separate run of both recipes from scratch.
        baseline, candidate: recipe names; the ratio is ``candidate / baseline`` mAP@0.5.
        on_result: called as ``on_result(epochs, recipe, metrics)`` after each run (e.g.
            to log it to MLflow).
        **options: the other keyword arguments of :func:`compare_recipes`.

    Returns:
        One row per budget, in order: ``{"epochs", baseline: metrics, candidate: metrics,
        "mAP50_ratio"}``; the ratio is ``None`` when the baseline's mAP@0.5 is 0.
    """
    rows = []
    for budget in epochs:
        results = compare_recipes(
            train_records,
            test_records,
            recipes=(baseline, candidate),
            epochs=int(budget),
            **options,
        )
        if on_result is not None:
            for recipe, metrics in results.items():
                on_result(int(budget), recipe, metrics)
        base = results[baseline]["mAP50"]
        ratio = results[candidate]["mAP50"] / base if base > 0 else None
        rows.append({"epochs": int(budget), **results, "mAP50_ratio": ratio})
    return rows


def write_budget_table(rows: list[dict], path: str | os.PathLike) -> None:
    """One CSV line per budget and recipe (``epochs, recipe, mAP50, mAP``), for
    ``dvc plots``."""
    recipes = [key for key in rows[0] if key not in ("epochs", "mAP50_ratio")]
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["epochs", "recipe", "mAP50", "mAP"])
        for row in rows:
            for recipe in recipes:
                metrics = row[recipe]
                writer.writerow([row["epochs"], recipe, metrics["mAP50"], metrics["mAP"]])


def plot_budgets(rows: list[dict], title: str = "YOLOv8 recipes") -> Figure:
    """mAP@0.5 of each recipe against the epoch budget, the ratio written at each point."""
    recipes = [key for key in rows[0] if key not in ("epochs", "mAP50_ratio")]
    figure = Figure(figsize=(6, 4))
    axes = figure.subplots()
    budgets = [row["epochs"] for row in rows]
    for recipe in recipes:
        axes.plot(budgets, [row[recipe]["mAP50"] for row in rows], "o-", label=recipe)
    for row in rows:
        if row["mAP50_ratio"] is not None:
            top = max(row[recipe]["mAP50"] for recipe in recipes)
            axes.annotate(
                f"x{row['mAP50_ratio']:.1f}",
                (row["epochs"], top),
                ha="center",
                xytext=(0, 6),
                textcoords="offset points",
            )
    axes.set(xlabel="epochs", ylabel="mAP@0.5 (test)", title=title, ylim=(0, 1.05))
    axes.set_xticks(budgets)
    axes.legend()
    axes.grid(alpha=0.3)
    figure.tight_layout()
    return figure
