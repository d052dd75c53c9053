"""Benchmark: the multi-class model trained the tutorial way and the kdet way, side by side.

Both ways train the same model (frozen VGG16, box head + class head, Adam 1e-4, losses
weighted 1 and 1) on the same images for the same epochs, without validation passes,
and are scored on the same test images:

1. tutorial way: every image loaded with ``keras.utils.load_img`` into one float32 NumPy
   array, the frozen VGG16 run on every batch of every epoch, float32;
2. kdet way: :func:`kdet.models.single_box.train_single_box` (images decoded once, the
   frozen backbone run once per image into a fresh feature cache, heads trained on the
   features, ``mixed_bfloat16``).

The wall time of each way covers loading, training and predicting the test images.
Without internet both use random (not ImageNet) VGG16 weights, so the metrics show that
the two ways agree, not what ImageNet features reach. One deliberate change to the
tutorial: it scales pixels by 1/255, which does not match VGG16's own preprocessing (BGR,
ImageNet mean subtracted) and, with random weights, collapses the features to nearly
constant values; the tutorial way here uses ``keras.applications.vgg16.preprocess_input``,
as kdet's model does, so both ways see the same features and can reach the same metrics.

The report (printed, and written atomically to ``--output``) holds both wall times with
their loading and training parts, both test metrics, the ratio, the command, TensorFlow's
threads and the load average at start and end (the machine is shared: a busy start or end
says the ratio is suspect).

Usage (defaults: the tutorial's 20 epochs on 60 images per class; about 9 minutes here)::

    python pipelines/benchmark_multiclass.py [--images-per-class 0]   # 0: all images
"""

import argparse
import dataclasses
import json
import os
import shlex
import sys
import tempfile
import time

import keras
import numpy as np

from kdet.atomic import write_text
from kdet.datasets.records import RecordSet
from kdet.deploy.benchmark import tf_threads
from kdet.metrics import box_regression_metrics
from kdet.models.single_box import split_at_backbone, train_single_box
from kdet.models.single_box.evaluate import evaluate_single_box
from kdet.training import configure_precision, set_seed


def subset(records: RecordSet, per_class: int, seed: int) -> RecordSet:
    """``per_class`` random records of each class (all when ``per_class`` is 0)."""
    if per_class <= 0:
        return records
    rng = np.random.default_rng(seed)
    chosen = []
    for class_id in range(len(records.class_names)):
        rows = [i for i, r in enumerate(records.records) if r.classes[0] == class_id]
        chosen += sorted(rng.choice(rows, size=min(per_class, len(rows)), replace=False))
    return dataclasses.replace(records, records=[records.records[i] for i in sorted(chosen)])


def tutorial_way(records, image_size, epochs, batch_size, seed):
    """The PyImageSearch multi-class script, offline (random VGG16 weights, VGG16 scaling)."""
    start = time.perf_counter()
    configure_precision("float32")
    set_seed(seed)

    def load(split):
        chosen = records.split(split).records
        images = [
            keras.utils.img_to_array(
                keras.utils.load_img(records.image_path(r), target_size=image_size)
            )
            for r in chosen
        ]
        boxes = [np.array(r.boxes[0]) / ([r.width, r.height] * 2) for r in chosen]
        labels = [r.classes[0] for r in chosen]
        return (
            keras.applications.vgg16.preprocess_input(np.array(images, dtype="float32")),
            np.array(boxes, "float32"),
            np.array(labels),
        )

    train_x, train_boxes, train_labels = load("train")
    test_x, test_boxes, test_labels = load("test")
    load_seconds = time.perf_counter() - start
    num_classes = len(records.class_names)
    vgg = keras.applications.VGG16(
        weights=None, include_top=False, input_tensor=keras.Input((*image_size, 3))
    )
    vgg.trainable = False
    flatten = keras.layers.Flatten()(vgg.output)
    x = flatten
    for units in (128, 64, 32):
        x = keras.layers.Dense(units, activation="relu")(x)
    box = keras.layers.Dense(4, activation="sigmoid", name="bounding_box")(x)
    x = flatten
    for _ in range(2):
        x = keras.layers.Dense(512, activation="relu")(x)
        x = keras.layers.Dropout(0.5)(x)
    label = keras.layers.Dense(num_classes, activation="softmax", name="class_label")(x)
    model = keras.Model(vgg.input, {"bounding_box": box, "class_label": label})
    model.compile(
        optimizer=keras.optimizers.Adam(1e-4),
        loss={"bounding_box": "mse", "class_label": "categorical_crossentropy"},
        loss_weights={"bounding_box": 1.0, "class_label": 1.0},
        metrics={"class_label": ["accuracy"]},
    )
    targets = {
        "bounding_box": train_boxes,
        "class_label": keras.utils.to_categorical(train_labels, num_classes),
    }
    fit_start = time.perf_counter()
    model.fit(train_x, targets, batch_size=batch_size, epochs=epochs, verbose=2)
    fit_seconds = time.perf_counter() - fit_start
    predictions = model.predict(test_x, batch_size=batch_size, verbose=0)
    seconds = time.perf_counter() - start
    boxes = box_regression_metrics(test_boxes, predictions["bounding_box"], "rel_xyxy")
    accuracy = float(np.mean(predictions["class_label"].argmax(-1) == test_labels))
    metrics = {"mean_iou": boxes["mean_iou"], "class_accuracy": accuracy}
    return seconds, metrics, {"load_seconds": load_seconds, "fit_seconds": fit_seconds}


def kdet_way(records, image_size, epochs, batch_size, seed, precision):
    """train_single_box with a cold feature cache and mixed precision."""
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as cache:
        result = train_single_box(
            records,
            model="multiclass_detector",
            model_options={"backbone": "vgg16", "weights": None, "trainable_blocks": 0},
            image_size=image_size,
            epochs=epochs,
            batch_size=batch_size,
            validation_fraction=0.0,
            precision=precision,
            seed=seed,
            feature_cache_dir=cache,
            verbose=2,
        )
        _, head = split_at_backbone(result.model)
        data = result.data
        evaluation = evaluate_single_box(
            head,
            data,
            class_names=result.class_names,
            train_rows=data.select("train"),
            test_rows=data.select("test"),
            batch_size=batch_size,
            features=result.features,
        )
    seconds = time.perf_counter() - start
    metrics = {k: evaluation.metrics[k] for k in ("mean_iou", "class_accuracy")}
    return seconds, metrics, result.info


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", default="data/raw/caltech101")
    parser.add_argument("--images-per-class", type=int, default=60, help="0: all")
    parser.add_argument("--epochs", type=int, default=20, help="the tutorial's 20")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--precision", default="mixed_bfloat16", help="of the kdet way")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--output", default="data/metrics/benchmark_multiclass.json")
    args = parser.parse_args(argv)

    records = subset(RecordSet.load(args.records), args.images_per_class, args.seed)
    size = (args.image_size, args.image_size)
    shown = sys.argv[1:] if argv is None else argv
    report = {
        "command": shlex.join(["python", "pipelines/benchmark_multiclass.py", *shown]),
        "tf_threads": tf_threads(),
        "loadavg_start": os.getloadavg(),
        "images": len(records),
        "test_images": len(records.split("test")),
        "epochs": args.epochs,
    }
    print(f"{report['command']}\n{report['tf_threads']}, load average {report['loadavg_start']}")
    print(f"{len(records)} images {records.summary()['classes']}, {args.epochs} epochs")
    tutorial_seconds, tutorial, tutorial_parts = tutorial_way(
        records, size, args.epochs, args.batch_size, args.seed
    )
    kdet_seconds, kdet, info = kdet_way(
        records, size, args.epochs, args.batch_size, args.seed, args.precision
    )
    report["tutorial_way"] = {
        "seconds": round(tutorial_seconds, 1),
        **tutorial,
        **{key: round(value, 1) for key, value in tutorial_parts.items()},
    }
    report["kdet_way"] = {
        "seconds": round(kdet_seconds, 1),
        **kdet,
        **{key: round(info[key], 1) for key in ("load_seconds", "feature_seconds", "fit_seconds")},
    }
    report["speedup"] = round(tutorial_seconds / kdet_seconds, 1)
    report["loadavg_end"] = os.getloadavg()
    print(f"tutorial way: {tutorial_seconds:.1f} s  {tutorial}")
    print(f"kdet way:     {kdet_seconds:.1f} s  {kdet}")
    print(f"speedup: {report['speedup']}x  (load average at end {report['loadavg_end']})")
    print(json.dumps(report))
    write_text(args.output, json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
