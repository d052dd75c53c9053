"""DVC stage ``prepare_NAME``: build the TFDS dataset ``kdet_NAME`` from ``data/raw/NAME``.

Usage: ``python pipelines/prepare.py NAME``. Afterwards any TensorFlow code can read it with
``tfds.load("kdet_NAME", data_dir="data/prepared/NAME")``. Prints the split sizes as JSON.
"""

import argparse
import json
import shutil
from pathlib import Path

from kdet.datasets.tfds_builders import prepare


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("name")
    args = parser.parse_args()
    data_dir = Path("data/prepared") / args.name
    shutil.rmtree(data_dir, ignore_errors=True)  # DVC re-runs the stage only when inputs changed
    builder = prepare(args.name, f"data/raw/{args.name}", data_dir)
    print(json.dumps({s: info.num_examples for s, info in builder.info.splits.items()}))


if __name__ == "__main__":
    main()
