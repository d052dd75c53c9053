"""The recipe comparison across epoch budgets, on one tiny 1-epoch run per recipe."""

import csv
import json
import math

import pytest

from kdet.models.yolov8.compare import compare_budgets, plot_budgets, write_budget_table

pytestmark = pytest.mark.slow  # two tiny trainings (~1 min of CPU)


@pytest.fixture(scope="module")
def rows(tiny_records):
    logged = []
    table = compare_budgets(
        tiny_records.split("train"),
        tiny_records.split("test"),
        epochs=[1],
        image_size=64,
        batch_size=8,
        precision="float32",
        on_result=lambda epochs, recipe, metrics: logged.append((epochs, recipe)),
    )
    return table, logged


def test_one_row_per_budget_with_both_recipes_and_their_ratio(rows):
    table, logged = rows
    assert logged == [(1, "keras_io"), (1, "kdet")]
    (row,) = table
    assert row["epochs"] == 1
    for recipe in ("keras_io", "kdet"):
        assert 0.0 <= row[recipe]["mAP50"] <= 1.0 and row[recipe]["train_seconds"] > 0
    base, ours = row["keras_io"]["mAP50"], row["kdet"]["mAP50"]
    expected = ours / base if base > 0 else None
    assert row["mAP50_ratio"] == (pytest.approx(expected) if expected is not None else None)
    json.loads(json.dumps(table, allow_nan=False))  # plain JSON, no NaN/inf


def test_csv_and_figure(rows, tmp_path):
    table, _ = rows
    write_budget_table(table, tmp_path / "recipes.csv")
    with open(tmp_path / "recipes.csv") as handle:
        lines = list(csv.DictReader(handle))
    assert [(line["epochs"], line["recipe"]) for line in lines] == [
        ("1", "keras_io"),
        ("1", "kdet"),
    ]
    assert all(math.isfinite(float(line["mAP50"])) for line in lines)
    assert plot_budgets(table).axes[0].get_xlabel() == "epochs"
