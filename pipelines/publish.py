"""DVC stage ``publish@FAMILY_DATASET``: register an evaluated model and move its alias.

Usage: ``python pipelines/publish.py FAMILY DATASET`` (parameters: ``params.yaml: publish``).
Logs the family's exported SavedModel as an MLflow pyfunc model with the evaluation's
metrics, registers it as a version of the family's registered model (``kdet.families``:
usually named DATASET), moves the alias to the best version by the family's ``rank_by``
metric and writes ``data/published/FAMILY_DATASET.json``.
"""

import argparse
import json
from pathlib import Path

import dvc.api

from kdet.families import get_family
from kdet.serving import publish_saved_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("family")
    parser.add_argument("dataset")
    args = parser.parse_args()
    params = dvc.api.params_show(stages=f"publish@{args.family}_{args.dataset}")["publish"]
    family = get_family(args.family)
    result = publish_saved_model(
        family.path("saved_model", args.dataset),
        dataset=args.dataset,
        family=args.family,
        metrics_file=family.path("metrics", args.dataset),
        registered_model=family.path("registered_model", args.dataset),
        metric=family.rank_by,
        **params,
    )
    out = Path("data/published") / f"{args.family}_{args.dataset}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
