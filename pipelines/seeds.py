"""Opt-in DVC stage ``seeds_GROUP`` (benchmarks/dvc.yaml): rows of ``params.yaml`` trained
and evaluated under several seeds, with the mean and spread of their figures.

Usage: ``python pipelines/seeds.py GROUP`` (parameters: ``params.yaml: seeds.GROUP``, the
``rows`` of the ``experiments`` or ``finetune`` tables to repeat and the ``seeds``).

Each row runs once per seed as its own experiment ``NAME_seedS`` (the row with
``train.seed: S``; a row that starts from a listed row starts from that row's twin of the
same seed) through :func:`kdet.experiment.train` and :func:`kdet.experiment.evaluate`: its
MLflow run ``NAME_seedS`` is in the dataset's experiment, its files under
``data/models/NAME_seedS`` etc. A killed run resumes the seed it was training from its last
epoch (the seeds before it train again). The rows run one after the other, each under every
seed. After each seed it writes what is finished so far: ``data/metrics/seeds_GROUP.json``
(per row: ``mean``, ``std`` and ``per_seed`` of the evaluation's top-level numbers and
``train_seconds``) and ``data/plots/seeds_GROUP/seeds.{csv,png}`` (each seed's value of the
family's ranking metric), and prints the table.
"""

import argparse
import csv
import io
import json
from pathlib import Path

import yaml
from stage_timing import record

from kdet import experiment
from kdet.atomic import write_file, write_text
from kdet.experiment import find_row, seed_summary, seed_twins
from kdet.families import get_family


def read_group(params: dict, group: str) -> tuple[dict, list]:
    """The rows (name -> row) and seeds of ``params["seeds"][group]``."""
    where = f"params.yaml seeds.{group}"
    spec = (params.get("seeds") or {}).get(group)
    if not isinstance(spec, dict) or set(spec) != {"rows", "seeds"}:
        raise SystemExit(f"{where}: expected {{rows: [NAME, ...], seeds: [N, ...]}}, got {spec!r}")
    if not isinstance(spec["seeds"], list) or not all(type(s) is int for s in spec["seeds"]):
        raise SystemExit(f"{where}.seeds: {spec['seeds']!r} is not a list of whole numbers")
    if not isinstance(spec["rows"], list) or not spec["rows"]:
        raise SystemExit(f"{where}.rows: {spec['rows']!r} is not a list of experiment names")
    try:
        rows = {name: find_row(params, name)[1] for name in spec["rows"]}
    except ValueError as err:
        raise SystemExit(f"{where}.rows: {err}") from None
    return rows, spec["seeds"]


def plot_seeds(points: list[dict], title: str):
    """Each seed's value (dots) and the mean (a bar) per row, one line per row."""
    from matplotlib.figure import Figure

    names = list(dict.fromkeys(p["row"] for p in points))
    figure = Figure(figsize=(7, 1.5 + 0.5 * len(names)))
    axes = figure.subplots()
    labels = []
    for y, name in enumerate(names):
        mine = [p for p in points if p["row"] == name]
        values = [p["value"] for p in mine]
        axes.plot(values, [y] * len(values), "o", alpha=0.6)
        axes.plot([sum(values) / len(values)], [y], "|k", markersize=16)
        labels.append(f"{name} ({mine[0]['metric']})")
    axes.set(yticks=range(len(names)), yticklabels=labels, title=title, ylim=(-0.5, len(names)))
    axes.set_xlabel("each seed (dots) and their mean (bar)")
    figure.tight_layout()
    return figure


def write_outputs(group: str, seeds: list, results: dict, metric_of: dict) -> None:
    """The summary of the seeds finished so far: metrics JSON, CSV and figure; prints it."""
    done = {name: per_seed for name, per_seed in results.items() if per_seed}
    summary = seed_summary(done)
    points = [
        {"row": name, "seed": seed, "metric": metric_of[name], "value": numbers[metric_of[name]]}
        for name in done
        for seed, numbers in summary[name]["per_seed"].items()
    ]
    for name in done:
        metric = metric_of[name]
        each = ", ".join(f"{s}: {p[metric]:.3f}" for s, p in summary[name]["per_seed"].items())
        print(
            f"{name}: {metric} {summary[name]['mean'][metric]:.3f} "
            f"+- {summary[name]['std'][metric]:.3f} (seed: value {each})",
            flush=True,
        )
    plots = Path(f"data/plots/seeds_{group}")
    plots.mkdir(parents=True, exist_ok=True)
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=["row", "seed", "metric", "value"])
    writer.writeheader()
    writer.writerows(points)
    write_text(plots / "seeds.csv", table.getvalue())
    figure = plot_seeds(points, f"{group}: seeds {seeds}")
    write_file(plots / "seeds.png", lambda f: figure.savefig(f, format="png", dpi=100))
    out = {"seeds": seeds, "rows": summary}
    write_text(Path(f"data/metrics/seeds_{group}.json"), json.dumps(out, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("group")
    args = parser.parse_args()
    rows, seeds = read_group(yaml.safe_load(Path("params.yaml").read_text()), args.group)
    try:
        twins = seed_twins(rows, seeds, where=f"params.yaml seeds.{args.group}")
    except ValueError as err:
        raise SystemExit(str(err)) from None
    results = {name: {} for name in rows}
    metric_of = {}
    for name, seed, exp in twins:
        print(f"== {exp.name}", flush=True)
        trained = experiment.train(exp)
        evaluated = experiment.evaluate(exp)
        numbers = {k: v for k, v in evaluated.items() if isinstance(v, int | float)}
        results[name][seed] = {**numbers, "train_seconds": trained["train_seconds"]}
        metric_of[name] = get_family(exp.family).rank_by
        write_outputs(args.group, seeds, results, metric_of)
    record("seeds", args.group)


if __name__ == "__main__":
    main()
