"""The ``kdet`` command line.

Example:
    $ kdet fetch raccoon --out data/raw/raccoon
    {"images": 200, "boxes": 217, "classes": {"raccoon": 217}}
"""

from __future__ import annotations

import argparse
import json
import sys

from kdet.errors import KdetError


def _fetch(args: argparse.Namespace) -> dict:
    from kdet.datasets import fetch

    options = {
        "categories": args.categories,
        "classes": args.classes,
        "split": args.split,
        "max_images_per_class": args.max_images_per_class,
        "num_images": args.num_images,
        "image_size": args.image_size,
        "seed": args.seed,
        "mirror": args.mirror,
    }
    options = {k: v for k, v in options.items() if v is not None}
    out = args.out or f"data/raw/{args.name}"
    return fetch(args.name, out, **options).summary()


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every ``kdet`` subcommand."""
    parser = argparse.ArgumentParser(
        prog="kdet", description="Object detection datasets, models and pipelines."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    fetch = commands.add_parser(
        "fetch",
        help="download (or generate) a dataset and print its summary as JSON",
        description="Download a dataset from its canonical address (or $KDET_MIRROR), "
        "extract it safely, write records.json and print "
        '{"images": N, "boxes": M, "classes": {name: boxes}} on stdout.',
    )
    fetch.add_argument("name", choices=["caltech101", "raccoon", "open_images", "shapes"])
    fetch.add_argument("--out", help="dataset folder (default: data/raw/NAME)")
    fetch.add_argument("--categories", nargs="+", help="caltech101: image folder names")
    fetch.add_argument("--classes", nargs="+", help="open_images: class display names")
    fetch.add_argument("--split", help="open_images: train, validation or test")
    fetch.add_argument("--max-images-per-class", type=int, help="open_images: cap per class")
    fetch.add_argument("--num-images", type=int, help="shapes: number of images")
    fetch.add_argument("--image-size", type=int, help="shapes: side of the square images")
    fetch.add_argument("--seed", type=int, help="seed of generated data and splits")
    fetch.add_argument("--mirror", help="a mirror folder or base URL (default: $KDET_MIRROR)")
    fetch.set_defaults(run=_fetch)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run a ``kdet`` subcommand; its result is printed as one JSON line on stdout."""
    args = build_parser().parse_args(argv)
    try:
        result = args.run(args)
    except (KdetError, ValueError, OSError) as err:  # errors name the file/URL and the problem
        print(f"kdet {args.command}: error: {err}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
