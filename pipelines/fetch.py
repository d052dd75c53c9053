"""DVC stage ``fetch_NAME``: download one dataset into ``data/raw/NAME``.

Usage: ``python pipelines/fetch.py NAME`` (parameters from ``params.yaml: fetch.NAME``).
Prints the dataset summary as one JSON line.
"""

import argparse
import json

import dvc.api

from kdet.datasets import fetch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("name")
    args = parser.parse_args()
    options = dvc.api.params_show(stages=f"fetch_{args.name}").get("fetch", {}).get(args.name)
    records = fetch(args.name, f"data/raw/{args.name}", **(options or {}))
    print(json.dumps(records.summary()))


if __name__ == "__main__":
    main()
