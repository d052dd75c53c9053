"""The ``kdet`` command line: ``kdet fetch|prepare|train|evaluate|export|predict|zoo``.

Every subcommand prints its result as one JSON line on stdout (progress and warnings go to
stderr), so scripts can read it; ``kdet zoo list`` prints a table unless ``--json``.

Example:
    $ kdet fetch raccoon --out data/raw/raccoon
    {"images": 200, "boxes": 217, "classes": {"raccoon": 217}}
    $ kdet predict models:/raccoon@champion photos/ --out predictions
    {"images": 12, ..., "images_per_s": 9.3, "detections_file": "predictions/detections.json"}
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
from pathlib import Path

from kdet.datasets import BUILT_IN, FORMATS
from kdet.deploy.export import FORMATS as ARTIFACT_FORMATS
from kdet.deploy.export import QUANTIZE
from kdet.errors import KdetError
from kdet.families import family_names, get_family


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
        "path": args.path,
    }
    options = {k: v for k, v in options.items() if v is not None}
    out = args.out or f"data/raw/{args.name}"
    return fetch(args.name, out, **options).summary()


def _prepare(args: argparse.Namespace) -> dict:
    from kdet.datasets.tfds_builders import prepare

    records = args.records or f"data/raw/{args.name}"
    out = args.out or f"data/prepared/{args.name}"
    builder = prepare(args.name, records, out)
    splits = {split: info.num_examples for split, info in builder.info.splits.items()}
    return {"dataset": f"kdet_{args.name}", "data_dir": out, "splits": splits}


def _family_command(args: argparse.Namespace) -> dict:
    from kdet import experiment, stages
    from kdet.deploy import artifacts
    from kdet.tracking import project_root

    if args.command == "export":
        artifacts.check_request(args.format, args.quantize)
        if args.family not in family_names():
            return _export_model(args)
        if args.out or args.class_names:
            raise ValueError("--out and --class-names go with a MODEL path, not a family")
    family = get_family(args.family)
    if getattr(args, "init", None):
        args.set = [*(args.set or []), f"weights={_zoo_weights(args.init, args.family)}"]
    if args.describe:
        print(stages.describe_family(args.family), file=sys.stderr)
        return {"family": args.family}
    options = dict(stages.qualify_option(text, family.defaults) for text in args.set or [])
    root = project_root()
    data = args.data or _default_dataset(root, args.family)
    row = stages.find_row(root, args.family, data) if stages.is_project(root) else None
    if row is not None and args.name is None:
        table, name = row
        step = "evaluate" if args.command == "export" else args.command
        sets = [
            # ``++``: add the key to the row or override it (Hydra's syntax, used by DVC)
            f"++{table}.{name}.{stages.qualify_option(text, family.defaults)[0]}="
            + text.partition("=")[2]
            for text in args.set or []
        ]
        metrics = [
            f"data/metrics/{name}_train.json" if step == "train" else f"data/metrics/{name}.json"
        ]
        result = stages.run_stage(
            stages.stage_name(table, name, step), sets, root=root, metrics=metrics
        )
        result["experiment"] = name
        if args.command == "export":
            exp = experiment.Experiment.from_row(name, stages.read_params(root)[table][name], table)
    else:
        dataset = _import_dataset(root, data, args.data_format)
        name = args.name or f"{args.family}_{dataset}"
        row = {"family": args.family, "dataset": dataset, "train": {}, "evaluate": {}}
        for group, values in stages.nest(options).items():
            row[group] = values
        exp = experiment.Experiment.from_row(name, row, "kdet " + args.command)
        layout = experiment.Layout(root)
        trained = (layout.train_dir(name) / experiment.RUN_FILE).exists()
        result = {"experiment": name, "dataset": dataset}
        if args.command == "train" or not trained:
            result["train"] = experiment.train(exp, root=root)
        if args.command != "train":
            result["metrics"] = experiment.flat_metrics(experiment.evaluate(exp, root=root))
    if args.command == "export":
        result["saved_model"] = str(experiment.Layout(root).saved_model(result["experiment"]))
        result["artifacts"] = artifacts.export_experiment(
            exp,
            root=root,
            formats=args.format,
            quantize=args.quantize,
            representative_images=args.representative_images,
        )
    return {"family": args.family, **result}


def _zoo_weights(init: str, family: str) -> str:
    """``--init zoo:NAME`` checked against ``family``: the ``weights`` option it sets."""
    from kdet import zoo

    if not init.startswith(zoo.PREFIX):
        raise ValueError(f"--init {init}: give zoo:NAME (kdet zoo list shows them)")
    entry, _ = zoo.resolve(init)
    if entry.family != family:
        raise ValueError(f"--init {init}: a {entry.family} model cannot start a {family} model")
    return init


def _zoo(args: argparse.Namespace) -> dict | None:
    from kdet import zoo

    if args.zoo_command == "download":
        out = args.out or os.environ.get(zoo.ENV) or "zoo"
        return {"name": args.name, "folder": str(zoo.download(args.name, out))}
    entries = [entry.summary() for entry in zoo.ENTRIES]
    if args.json:
        return {"zoo": entries}
    print(f"{'name':32} {'family':10} {'classes':>7}  source")
    for e in entries:
        print(f"{e['name']:32} {e['family']:10} {e['classes']:>7}  {e['source']}")
    return None


def _export_model(args: argparse.Namespace) -> dict:
    """``kdet export MODEL --format F --out PATH``: one artifact of a serving SavedModel
    folder or a ``.keras`` file (see :func:`kdet.deploy.export`)."""
    from kdet import deploy, experiment
    from kdet.datasets.records import RecordSet
    from kdet.deploy.artifacts import training_images
    from kdet.tracking import project_root

    source = Path(args.family)
    if not source.exists():
        raise ValueError(
            f"{source}: neither a model family ({', '.join(family_names())}) nor a SavedModel "
            "folder or .keras file"
        )
    if args.out is None or len(args.format) != 1:
        raise ValueError(f"{source}: converting a model path takes one --format and --out PATH")
    model, options = str(source), {}
    if source.suffix == ".keras":
        import keras

        import kdet.models  # noqa: F401  (registers kdet's Keras classes, KerasCV's for YOLOv8)

        try:
            model = keras.saving.load_model(source)
        except Exception as err:  # a truncated zip, an unknown class, ...
            raise KdetError(source, f"cannot load the Keras model: {err}") from err
        options["class_names"] = _class_names(args.class_names, source)
    images = None
    if args.quantize == "int8":
        if args.data is None:
            raise ValueError("--quantize int8: give --data DATASET to draw calibration images from")
        root = project_root()
        dataset = _import_dataset(root, args.data, args.data_format)
        records = RecordSet.load(experiment.Layout(root).records(dataset))
        images = training_images(records, args.representative_images)
    (format,) = args.format
    path = deploy.export(model, args.out, format, args.quantize, images, **options)
    return {"model": str(source), "artifacts": {format: path}}


def _class_names(text: str | None, keras_file: Path) -> list[str]:
    """``--class-names a,b``, else those of ``run.json`` beside a model ``kdet train`` wrote."""
    from kdet.experiment import RUN_FILE

    if text:
        return text.split(",")
    run_file = keras_file.parent / RUN_FILE
    if not run_file.exists():
        raise ValueError(f"{keras_file}: give --class-names A,B,... (no {RUN_FILE} beside it)")
    return json.loads(run_file.read_text())["class_names"]


def _positive_int(text: str) -> int:
    """An argparse type: a whole number >= 1."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 1")
    return int(text)


def _artifact_formats(text: str) -> list[str]:
    """``--format onnx,litert`` -> ``["onnx", "litert"]``."""
    return [part.strip() for part in text.split(",") if part.strip()]


def _default_dataset(root, family: str) -> str:
    from kdet.stages import TABLES, read_params

    params = read_params(root)
    for table in TABLES:
        for row in (params.get(table) or {}).values():
            if isinstance(row, dict) and row.get("family") == family:
                return row["dataset"]
    raise ValueError(f"--data: give a dataset name or folder (no experiment of {family!r} here)")


def _import_dataset(root, data: str, data_format: str | None) -> str:
    """The dataset name of ``data`` (a dataset name or a path), imported if not yet."""
    from kdet.datasets import BUILT_IN, detect_format, fetch
    from kdet.experiment import Layout
    from kdet.stages import dataset_slug, read_params

    configured = read_params(root).get("datasets") or {}
    if data in configured or (data in BUILT_IN and data_format is None):
        name = data
        options = dict(configured.get(name) or {"source": name})
        source = options.pop("source", name)
    elif data_format == "tfds" or "://" in data:
        if data_format is None:
            raise ValueError(f"--data {data}: give --format voc|coco|yolo for an archive URL")
        name, source, options = dataset_slug(data), data_format, {"path": data}
    else:
        if not Path(data).exists():
            raise FileNotFoundError(f"--data {data}: no such dataset name, folder or file")
        name = dataset_slug(data)
        source = data_format or detect_format(data)
        options = {"path": str(Path(data).resolve())}
    folder = Layout(root).records(name)
    if not (folder / "records.json").exists():
        summary = fetch(source, folder, **options).summary()
        print(f"kdet: imported {data} as dataset {name!r}: {json.dumps(summary)}", file=sys.stderr)
    return name


def _publish(args: argparse.Namespace) -> dict:
    from kdet.serving import publish_saved_model

    return publish_saved_model(
        args.saved_model,
        dataset=args.dataset,
        family=args.family,
        metrics_file=args.metrics,
        registered_model=args.registered_model,
        metric=args.metric,
        greater_is_better=not args.lower_is_better,
        alias=args.alias,
        proposals={"mode": args.proposals_mode, "max_side": args.proposals_max_side},
    )


def _predict(args: argparse.Namespace) -> dict:
    from kdet.predict import load_detector, predict, predict_webcam

    classes = [name.strip() for name in args.classes.split(",")] if args.classes else None
    if args.webcam is None and not args.inputs:
        raise ValueError("give at least one image, folder or video (or --webcam N)")
    model = load_detector(args.model, classes) if classes else args.model
    if args.webcam is not None:
        return predict_webcam(
            model,
            args.webcam,
            out_dir=args.out,
            score_threshold=args.score_threshold,
            max_frames=args.max_frames,
            detections_format=args.format,
            progress=not args.quiet,
        )
    summary = predict(
        model,
        args.inputs,
        out_dir=args.out,
        score_threshold=args.score_threshold,
        detections_format=args.format,
        save_annotated=not args.no_annotated,
        progress=not args.quiet,
    )
    for message in summary["failed"]:
        print(f"kdet predict: skipped {message}", file=sys.stderr)
    return summary


EXPORT_EPILOG = """

artifacts (--format onnx / litert, written to data/models/NAME/export/):
  kdet export yolov8 --data raccoon --format onnx,litert    # model.onnx, model.tflite
  kdet export yolov8 --data raccoon --format litert --quantize int8   # model_int8.tflite
  kdet export bbox_regressor --data caltech101 --format onnx
YOLOv8 and RetinaNet convert their Keras model (NMS runs in kdet.deploy.Runtime), the other
families their SavedModel; R-CNN / Fast R-CNN to ONNX only (selective search runs in
kdet.deploy.Runtime), the sliding window to nothing (exit status 1). A model path instead of
a family converts that model alone (one --format, --out required):
  kdet export data/models/NAME/saved_model --format onnx --out model.onnx
  kdet export data/models/NAME/train/model.keras --format litert --out model.tflite
then: kdet predict model.onnx photos/"""


def _add_family_command(commands, command: str, help_text: str, description: str) -> None:
    available = "\n".join(f"  {name:16} {get_family(name).summary}" for name in family_names())
    data_format = "--data-format" if command == "export" else "--format"
    parser = commands.add_parser(
        command,
        help=help_text,
        description=textwrap.fill(description, 88),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"families:\n{available}\n\n"
        "examples:\n"
        f"  kdet {command} yolov8 --describe                 # its options and defaults\n"
        f"  kdet {command} yolov8 --data raccoon             # a built-in dataset\n"
        f"  kdet {command} yolov8 --data ~/data/my_voc       # Pascal VOC folder\n"
        f"  kdet {command} fast_rcnn --data instances_train.json    # COCO JSON\n"
        f"  kdet {command} yolov8 --data my_yolo/data.yaml --set epochs=30\n"
        f"  kdet {command} yolov8 --data voc/2007 {data_format} tfds\n"
        "inside a kdet project, a family and dataset with a row in params.yaml run that\n"
        "row's DVC stage (dvc repro, or dvc exp run -S with --set); anything else runs\n"
        "the same runner directly and logs to ./mlflow.db."
        + (EXPORT_EPILOG if command == "export" else ""),
    )
    parser.add_argument(
        "family",
        help="model family name (listed below)"
        + (", or a SavedModel folder or .keras file to convert" if command == "export" else ""),
    )
    parser.add_argument(
        "--data",
        "--dataset",
        help="a dataset name (params.yaml datasets, or built-in: caltech101, raccoon, "
        "open_images, shapes), a VOC/COCO/YOLO folder or file, or a TFDS name with "
        "--format tfds (default: the dataset of the family's first experiment row)",
    )
    parser.add_argument(
        data_format, dest="data_format", choices=FORMATS, help="format of --data (default: guessed)"
    )
    parser.add_argument("--name", help="experiment name (default: FAMILY_DATASET)")
    parser.add_argument(
        "--set",
        metavar="KEY=VALUE",
        action="append",
        help="change one option (as listed by --describe, e.g. epochs=2 or "
        "evaluate.batch_size=4); repeatable",
    )
    parser.add_argument(
        "--describe",
        action="store_true",
        help="print the family's options and defaults (to stderr) and exit",
    )
    if command == "train":
        parser.add_argument(
            "--init",
            metavar="zoo:NAME",
            help="start from a pretrained model of `kdet zoo list` (its family's): sets "
            "weights=zoo:NAME; a new class head when the class count differs",
        )
    if command == "export":
        parser.add_argument(
            "--format",
            type=_artifact_formats,
            default=["saved_model"],
            metavar="F[,F...]",
            help=f"artifacts to write, among {', '.join(ARTIFACT_FORMATS)} (default: "
            "saved_model, the serving SavedModel the evaluation writes)",
        )
        parser.add_argument(
            "--quantize",
            choices=QUANTIZE,
            default="none",
            help="litert only: float16 weights, or int8 weights and activations "
            "(default: %(default)s)",
        )
        parser.add_argument(
            "--representative-images",
            type=_positive_int,
            default=100,
            metavar="N",
            help="int8: calibrate on N training images, drawn seeded (default: %(default)s)",
        )
        parser.add_argument("--out", help="MODEL path only: the file or folder to write")
        parser.add_argument(
            "--class-names",
            metavar="A,B,...",
            help=".keras MODEL only: class names by id (default: those of run.json beside it)",
        )
    parser.set_defaults(run=_family_command)


def _data_check(args: argparse.Namespace) -> dict:
    from kdet.datasets.inspect import check_dataset, format_report
    from kdet.stages import read_params
    from kdet.tracking import project_root

    target, data_format, options = args.dataset, args.format, {}
    configured = (read_params(project_root()).get("datasets") or {}).get(args.dataset)
    if configured and data_format is None:  # a dataset of params.yaml, with its options
        options = dict(configured)
        source = options.pop("source", args.dataset)
        target = options.pop("path", source)
        data_format = source if "path" in configured else None
    report, code = check_dataset(target, format=data_format, **options)
    print(format_report(report), file=sys.stderr)
    report["exit_code"] = code
    return report


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
    fetch.add_argument("name", choices=[*BUILT_IN, *FORMATS], help="built-in dataset or format")
    fetch.add_argument("--path", help="voc/coco/yolo: folder, file or https archive; tfds: name")
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

    data = commands.add_parser("data", help="inspect a dataset before training on it")
    data_commands = data.add_subparsers(dest="data_command", required=True)
    check = data_commands.add_parser(
        "check",
        help="import a dataset and report what a user checks first",
        description=textwrap.fill(
            "Import a dataset (a built-in name, a VOC/COCO/YOLO folder or file, or a TFDS name "
            "with --format tfds) into a temporary folder and print images and boxes per split "
            "and class, a box-size histogram, the images skipped or repaired and why, and "
            "fatal problems (stderr; the report as JSON on stdout). Exit status 1 on a fatal "
            "problem, 2 when the import failed.",
            88,
        ),
    )
    check.add_argument(
        "dataset",
        help="a dataset of params.yaml (checked with its options), a built-in name, a "
        "folder, file or TFDS name",
    )
    check.add_argument("--format", choices=FORMATS, help="default: guessed from the files")
    check.set_defaults(run=_data_check)

    prepare = commands.add_parser(
        "prepare",
        help="build the TFDS dataset kdet_NAME from a fetched dataset",
        description=textwrap.fill(
            "Build the TensorFlow Datasets dataset kdet_NAME from data/raw/NAME (what the "
            "DVC stage prepare_NAME runs), then any TensorFlow code can read it with "
            'tfds.load("kdet_NAME", data_dir=OUT). An existing version in OUT is kept. '
            'Prints {"dataset", "data_dir", "splits": {split: examples}}.',
            88,
        ),
    )
    prepare.add_argument("name", choices=["caltech101", "raccoon", "open_images", "shapes"])
    prepare.add_argument("--records", help="fetched dataset folder (default: data/raw/NAME)")
    prepare.add_argument("--out", help="TFDS data folder (default: data/prepared/NAME)")
    prepare.set_defaults(run=_prepare)

    _add_family_command(
        commands,
        "train",
        "train a model family on a dataset (yours or a built-in one)",
        "Train one model family on a dataset: a built-in one, a dataset of params.yaml, or "
        "your own labelled images (Pascal VOC folder, COCO JSON, Ultralytics YOLO data.yaml, "
        "TFDS name), imported into data/raw/NAME on first use. Inside a kdet project a row of "
        "params.yaml for the family and dataset runs its DVC stage (`dvc repro`, or "
        "`dvc exp run -S` with --set); otherwise kdet's experiment runner runs directly. "
        "Training checkpoints every epoch and resumes when run again after an interruption. "
        "Prints the training numbers as JSON; the MLflow run lands in the dataset's experiment.",
    )
    _add_family_command(
        commands,
        "evaluate",
        "evaluate a trained model family (mAP50, mAP, mean_iou, ...)",
        "Evaluate one model family on a dataset's test split (training first if needed), "
        "through the row's DVC stage or the runner as for `kdet train`: metrics JSON (mAP50, "
        "mAP, per-class AP, mean_iou, latency_ms, ...), plots, the SavedModel and the MLflow "
        "run. Prints the metrics as JSON.",
    )
    _add_family_command(
        commands,
        "export",
        "export a trained model as a SavedModel, ONNX or LiteRT file",
        "Export a trained model of one family on a dataset (training and evaluating first "
        "if needed): the evaluation writes its SavedModel (kdet's serving contract: "
        "signatures serving_default(image_bytes) and detect_image(image), loadable with "
        "tf.saved_model.load and no kdet); --format onnx,litert also converts the model with "
        "kdet.deploy.export into data/models/NAME/export/. Or convert one MODEL path. Prints "
        "the paths as JSON; try them with `kdet predict PATH image.jpg`.",
    )

    publish = commands.add_parser(
        "publish",
        help="log an exported model to MLflow, register it and move the champion alias",
        description=textwrap.fill(
            "Log a SavedModel as an MLflow pyfunc model (servable with `mlflow models serve`) "
            "in a run of the dataset's experiment, with the metrics of a metrics JSON; "
            "register it as a new version of the model named after the dataset; move the "
            "alias (default champion) to the version with the best --metric.",
            88,
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  kdet publish data/models/yolov8_raccoon/saved_model --dataset raccoon "
        "--family yolov8 \\\n      --metrics data/metrics/yolov8_raccoon.json\n"
        "  mlflow models serve -m models:/raccoon@champion --env-manager local",
    )
    publish.add_argument("saved_model", help="SavedModel folder written by an export")
    publish.add_argument("--dataset", required=True, help="dataset (the MLflow experiment)")
    publish.add_argument("--family", required=True, help="model family (a version tag)")
    publish.add_argument(
        "--registered-model", help="MLflow registered model name (default: the dataset)"
    )
    publish.add_argument(
        "--metrics", required=True, help="metrics JSON of the evaluation (flat numbers)"
    )
    publish.add_argument(
        "--metric", default="mAP50", help="rank versions by (default: %(default)s)"
    )
    publish.add_argument("--lower-is-better", action="store_true", help="e.g. for latency_ms")
    publish.add_argument("--alias", default="champion", help="alias to move (default: %(default)s)")
    publish.add_argument(
        "--proposals-mode",
        default="fast",
        choices=["fast", "quality", "single"],
        help="selective search for proposal-taking models (R-CNN); default: %(default)s",
    )
    publish.add_argument("--proposals-max-side", type=int, default=300, help="default: 300")
    publish.set_defaults(run=_publish)

    predict = commands.add_parser(
        "predict",
        help="detect objects in images, folders, videos or a camera with an exported model",
        description=textwrap.fill(
            "Run a detector on images, image folders (recursively) and video files; "
            "write annotated images (OUT/NAME.jpg), annotated videos (OUT/NAME.mp4) and "
            "OUT/detections.json|csv with boxes x1,y1,x2,y2 in each input's pixels, class names "
            "and scores. Prints a JSON summary with images/s (and FPS for videos). Unreadable or "
            "missing inputs are reported on stderr and skipped; the exit status is then 1.",
            88,
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="MODEL can be:\n"
        "  data/models/RUN/saved_model   a SavedModel folder written by kdet export\n"
        "  model.onnx                    an ONNX file written by kdet export --format onnx\n"
        "  model.tflite                  a LiteRT file (beside its model.classes.json)\n"
        "  runs:/RUN_ID/detector         a model logged in an MLflow run\n"
        "  models:/raccoon/3             a registered model version\n"
        "  models:/raccoon@champion      a registered model alias\n"
        "  raccoon                       a registered model (its champion, else latest)\n"
        "  zoo:NAME                      a pretrained model (kdet zoo list; $KDET_ZOO)\n"
        "examples:\n"
        "  kdet predict models:/raccoon@champion my_photos/ --out predictions\n"
        "  kdet predict data/models/yolov8/saved_model clip.mp4 --format csv\n"
        "  kdet predict data/models/yolov8_raccoon/export/model.onnx photos/\n"
        "  kdet predict raccoon --webcam 0 --max-frames 300\n"
        "  kdet predict zoo:retinanet_resnet50_fpn_coco photo.jpg --classes apple,banana",
    )
    predict.add_argument(
        "model", help="SavedModel folder, .onnx or .tflite file, MLflow model URI or name, zoo:NAME"
    )
    predict.add_argument("inputs", nargs="*", metavar="INPUT", help="image, folder or video")
    predict.add_argument(
        "--out", default="predictions", help="output folder (default: %(default)s)"
    )
    predict.add_argument(
        "--score-threshold",
        type=float,
        default=0.25,
        help="drop detections scoring below this (default: %(default)s)",
    )
    predict.add_argument(
        "--format", choices=["json", "csv"], default="json", help="detections file format"
    )
    predict.add_argument(
        "--no-annotated", action="store_true", help="write only the detections file"
    )
    predict.add_argument(
        "--classes", metavar="A,B,...", help="zoo:NAME only: keep these classes' detections"
    )
    predict.add_argument("--webcam", type=int, metavar="N", help="read camera N instead")
    predict.add_argument("--max-frames", type=int, help="with --webcam: stop after this many")
    predict.add_argument("--quiet", action="store_true", help="no progress bar")
    predict.set_defaults(run=_predict)

    zoo = commands.add_parser(
        "zoo",
        help="pretrained detectors: list them, or save one for offline use",
        description=textwrap.fill(
            "Pretrained KerasHub / KerasCV detectors kdet runs (kdet predict zoo:NAME) and "
            "fine-tunes (kdet train FAMILY --init zoo:NAME). A local copy in $KDET_ZOO/NAME "
            "(written by `kdet zoo download`) is used first; otherwise the library downloads "
            "the preset from Kaggle.",
            88,
        ),
    )
    zoo_commands = zoo.add_subparsers(dest="zoo_command", required=True)
    zoo_list = zoo_commands.add_parser("list", help="name, family, classes and source of each")
    zoo_list.add_argument("--json", action="store_true", help="print JSON instead of a table")
    download = zoo_commands.add_parser(
        "download", help="save a pretrained detector as DIR/NAME (needs internet)"
    )
    download.add_argument("name", help="a name of kdet zoo list")
    download.add_argument("--out", metavar="DIR", help="default: $KDET_ZOO, else ./zoo")
    zoo.set_defaults(run=_zoo)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run a ``kdet`` subcommand; its result is printed as one JSON line on stdout."""
    args = build_parser().parse_args(argv)
    try:
        result = args.run(args)
    except (KdetError, ValueError, OSError) as err:  # errors name the file/URL and the problem
        print(f"kdet {args.command}: error: {err}", file=sys.stderr)
        return 1
    if result is not None:
        print(json.dumps(result, default=str))
    if isinstance(result, dict) and "exit_code" in result:
        return result["exit_code"]
    return 1 if isinstance(result, dict) and result.get("failed") else 0


if __name__ == "__main__":
    sys.exit(main())
