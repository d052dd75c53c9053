"""DVC stage ``fetch@NAME``: download, generate or import one dataset into ``data/raw/NAME``.

Usage: ``python pipelines/fetch.py NAME`` (parameters: ``params.yaml: datasets.NAME``, whose
``source`` is a built-in dataset or a format of the user's own images, see
:func:`kdet.datasets.fetch`). Prints the dataset summary as one JSON line.
"""

import argparse
import json
from pathlib import Path

import yaml
from stage_timing import record

from kdet.datasets import fetch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("name")
    args = parser.parse_args()
    datasets = yaml.safe_load(Path("params.yaml").read_text()).get("datasets") or {}
    if args.name not in datasets:
        raise SystemExit(f"params.yaml datasets: no dataset {args.name!r} ({sorted(datasets)})")
    options = dict(datasets[args.name])
    source = options.pop("source", None)
    if not source:
        raise SystemExit(f"params.yaml datasets.{args.name}.source: missing")
    records = fetch(source, f"data/raw/{args.name}", **options)
    print(json.dumps(records.summary()))
    record("fetch", args.name)


if __name__ == "__main__":
    main()
