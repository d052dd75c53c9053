"""DVC stage ``proposals_raccoon``: selective search over every raccoon image, once.

Writes the proposals with each image's search time (nothing else reads them: the families
cache their own), and measures the speed/recall trade-off of several settings on the
first test images. Parameters: ``params.yaml: rcnn.proposals``.
"""

import json
from pathlib import Path

import yaml

from kdet.datasets.records import RecordSet
from kdet.models.rcnn.proposals import proposal_recall, propose_records, save_proposals

OUT = Path("data/features/raccoon_proposals")


def main() -> None:
    params = yaml.safe_load(Path("params.yaml").read_text())["rcnn"]["proposals"]
    records = RecordSet.load("data/raw/raccoon")
    setting = {k: params[k] for k in ("mode", "max_side", "seed")}
    proposals, timing = propose_records(records, processes=params["processes"], **setting)
    save_proposals(OUT / "proposals.npz", proposals)
    (OUT / "seconds.json").write_text(json.dumps(timing["seconds"], indent=1))
    metrics = {
        **{f"{k}": v for k, v in proposal_recall(proposals, records).items()},
        "seconds_per_image": timing["seconds_per_image"],
        "wall_seconds": timing["wall_seconds"],
    }

    # The trade-off: each setting on the same first test images.
    sample = records.split("test")
    sample.records = sample.records[: params["compare"]["images"]]
    rows = []
    for option in params["compare"]["settings"]:
        found, took = propose_records(
            sample, processes=params["processes"], seed=params["seed"], **option
        )
        side = option["max_side"] or "full"
        row = {
            "setting": f"{option['mode']}@{side}",
            "seconds_per_image": took["seconds_per_image"],
            **proposal_recall(found, sample),
        }
        rows.append(row)
        metrics[f"compare/{row['setting']}/seconds_per_image"] = row["seconds_per_image"]
        metrics[f"compare/{row['setting']}/recall_50"] = row["recall_50"]
        metrics[f"compare/{row['setting']}/recall_70"] = row["recall_70"]
        print(json.dumps(row))
    Path("data/metrics").mkdir(parents=True, exist_ok=True)
    Path("data/metrics/proposals_raccoon.json").write_text(json.dumps(metrics, indent=2))
    plots = Path("data/plots/proposals_raccoon")
    plots.mkdir(parents=True, exist_ok=True)
    (plots / "tradeoff.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
