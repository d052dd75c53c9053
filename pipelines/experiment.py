"""DVC stages ``train@NAME``, ``evaluate@NAME``, ``export@NAME``, ``publish@NAME`` (and their
``finetune`` twins): one step of the experiment ``NAME`` of ``params.yaml`` through the one
runner, :mod:`kdet.experiment` (``export``: :func:`kdet.deploy.artifacts.export_step`).

Usage: ``python pipelines/experiment.py train|evaluate|export|publish NAME``. The row is read
from ``params.yaml: experiments.NAME`` or ``finetune.NAME``; ``export`` also reads
``params.yaml: export``, ``publish`` ``params.yaml: publish``. Prints the step's numbers as
one JSON line.
"""

import argparse
import json
from pathlib import Path

import yaml
from stage_timing import record

from kdet import experiment
from kdet.experiment import Experiment, find_row, flat_metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("step", choices=["train", "evaluate", "export", "publish"])
    parser.add_argument("name")
    args = parser.parse_args()
    params = yaml.safe_load(Path("params.yaml").read_text())
    try:
        table, row = find_row(params, args.name)
    except ValueError as err:
        raise SystemExit(f"params.yaml: {err}") from None
    exp = Experiment.from_row(args.name, row, f"params.yaml {table}")
    if args.step == "train":
        result = experiment.train(exp)
    elif args.step == "evaluate":
        result = flat_metrics(experiment.evaluate(exp))
    elif args.step == "export":
        from kdet.deploy.artifacts import export_step

        result = export_step(exp, **params["export"])
    else:
        result = experiment.publish(exp, **params["publish"])
        out = Path("data/published") / f"{args.name}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, default=str))
    record(args.step, args.name)


if __name__ == "__main__":
    main()
