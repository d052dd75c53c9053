"""Where a YOLOv8 training step's time goes on this CPU, and what XLA and bf16 change.

One process, one training batch of the dataset (kdet's recipe and input pipeline), every
way timed interleaved by :func:`kdet.latency.time_calls` so load changes hit them alike:

* the parts of kdet's train step: forward, + loss (CIoU, BCE and KerasCV's label
  assignment), + backward, and the whole step as ``model.fit`` runs it (+ clipping, AdamW,
  EMA, loss tracking, the next batch from the pipeline);
* the whole step with XLA (``jit_compile=True``), and with XLA on the loss and the optimizer
  update only (the many small ops; the convolutions stay on oneDNN);
* forward + backward under ``mixed_bfloat16`` against float32 (KerasCV's YOLOv8 loss cannot
  train under a mixed policy, so the loss here is a stand-in sum of squares);
* a 2048² float32 matmul, the CPU's dense rate for reference, and the input pipeline alone.

Prints and writes ``data/metrics/profile_yolov8_<dataset>.json``: median ms per batch,
images/s, GFLOP/s (3x the forward's FLOPs for a training step), ratios, threads and load.

Usage:
    python pipelines/profile_yolov8.py                # params.yaml: profile_yolov8
    python pipelines/profile_yolov8.py --rounds 3 --dataset shapes --image-size 128
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import yaml


def main(argv=None) -> None:
    settings = yaml.safe_load(Path("params.yaml").read_text())["profile_yolov8"]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default=settings["dataset"])
    parser.add_argument("--image-size", type=int, default=settings["image_size"])
    parser.add_argument("--batch-size", type=int, default=settings["batch_size"])
    parser.add_argument("--rounds", type=int, default=settings["rounds"])
    args = parser.parse_args(argv)

    from kdet import atomic
    from kdet.datasets.records import RecordSet

    records = RecordSet.load(Path("data/raw") / args.dataset).split("train")
    result = profile(records, args.image_size, args.batch_size, args.rounds)
    print(json.dumps(result, indent=2))
    atomic.write_text(
        Path("data/metrics") / f"profile_yolov8_{args.dataset}.json", json.dumps(result, indent=2)
    )


def profile(records, image_size: int, batch_size: int, rounds: int) -> dict:
    """The timings described in the module docstring, as a JSON-ready dict."""
    import keras
    import tensorflow as tf

    from kdet.latency import time_calls
    from kdet.models.yolov8.builder import build_yolov8
    from kdet.models.yolov8.inputs import training_dataset
    from kdet.models.yolov8.recipe import compile_yolov8, get_recipe
    from kdet.models.yolov8.train import as_pairs
    from kdet.training import build_training_variables, set_seed

    size = (image_size, image_size)
    recipe = get_recipe("kdet")
    set_seed(0)
    batches = as_pairs(
        training_dataset(
            records, image_size=size, batch_size=batch_size, seed=0, **recipe["inputs"]
        )
    )
    load_start = os.getloadavg()
    input_rate = _input_images_per_s(batches, batch_size)
    images, boxes = next(iter(batches))

    def model(policy="float32", xla=None):
        keras.mixed_precision.set_global_policy(policy)
        set_seed(0)
        built = build_yolov8(
            num_classes=len(records.class_names), image_size=size, **recipe["model"]
        )
        keras.mixed_precision.set_global_policy("float32")
        if policy != "float32":
            return built  # forward + backward only: the loss fails under a mixed policy
        compile_yolov8(built, total_steps=1000, jit_compile=xla == "step", **recipe["compile"])
        build_training_variables(built, batches.element_spec)
        if xla == "loss+optimizer":
            apply = built.optimizer.apply
            update = tf.function(
                lambda grads: apply(grads, built.trainable_variables), jit_compile=True
            )
            built.optimizer.apply = lambda grads, variables=None: update(list(grads))
            built.compute_loss = tf.function(built.compute_loss, jit_compile=True)
        built.make_train_function()
        return built

    plain = model()
    forward = tf.function(lambda x: plain(x, training=True))
    loss = tf.function(lambda x, y: plain.compute_loss(x=x, y=y, y_pred=plain(x, training=True)))
    gradients = _gradients(
        plain, lambda x, y: plain.compute_loss(x=x, y=y, y_pred=plain(x, training=True))
    )
    steps = {"step": plain, "step, XLA": model(xla="step")}
    steps["step, XLA on loss and optimizer"] = model(xla="loss+optimizer")
    stand_in = {
        policy: _gradients(net, lambda x, y, net=net: _sum_of_squares(net(x, training=True)))
        for policy, net in (("float32", plain), ("mixed_bfloat16", model("mixed_bfloat16")))
    }
    matrix = tf.random.normal([2048, 2048])
    matmul = tf.function(lambda a: tf.matmul(a, a))
    iterators = {name: iter(batches.repeat()) for name in steps}
    calls = {
        "matmul 2048": lambda i: matmul(matrix).numpy(),
        "forward": lambda i: forward(images)["boxes"].numpy(),
        "forward + loss": lambda i: loss(images, boxes).numpy(),
        "forward + loss + backward": lambda i: gradients(images, boxes)[0].numpy(),
        **{
            name: lambda i, m=m, it=iterators[name]: m.train_function(it)["loss"].numpy()
            for name, m in steps.items()
        },
        **{
            f"forward + backward, {policy} (stand-in loss)": lambda i, g=g: g(images, boxes)[
                0
            ].numpy()
            for policy, g in stand_in.items()
        },
    }
    stats, _ = time_calls(calls, warmup=2, repeats=rounds)
    median = {name: s["latency_ms"] for name, s in stats.items()}
    forward_flops = _forward_flops(plain, size)
    step_ms = median["step"]
    return {
        "images": len(records),
        "image_size": image_size,
        "batch_size": batch_size,
        "rounds": rounds,
        "threads": {
            "cores": os.cpu_count(),
            "tf_intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
            "tf_inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
        },
        "load_average": {"start": load_start, "end": os.getloadavg()},
        "median_ms_per_batch": median,
        "images_per_s": {name: batch_size * 1000.0 / ms for name, ms in median.items()},
        "input_pipeline_images_per_s": input_rate,
        "forward_gflops_per_image": forward_flops / 1e9,
        "gflop_per_s": {
            "matmul 2048": 2 * 2048**3 / median["matmul 2048"] / 1e6,
            "forward": forward_flops * batch_size / median["forward"] / 1e6,
            "step (3x forward)": 3 * forward_flops * batch_size / step_ms / 1e6,
        },
        "share_of_step": {
            "forward": median["forward"] / step_ms,
            "loss and label assignment": (median["forward + loss"] - median["forward"]) / step_ms,
            "backward": (median["forward + loss + backward"] - median["forward + loss"]) / step_ms,
            "optimizer, EMA, tracking, input": 1 - median["forward + loss + backward"] / step_ms,
        },
        "speed_up_over_step": {
            "XLA": step_ms / median["step, XLA"],
            "XLA on loss and optimizer": step_ms / median["step, XLA on loss and optimizer"],
            "bf16 forward + backward": median["forward + backward, float32 (stand-in loss)"]
            / median["forward + backward, mixed_bfloat16 (stand-in loss)"],
        },
    }


def _gradients(model, loss_fn):
    import tensorflow as tf

    @tf.function
    def gradients(x, y):
        with tf.GradientTape() as tape:
            value = loss_fn(x, y)
        return tape.gradient(value, model.trainable_variables)

    return gradients


def _sum_of_squares(outputs):
    import tensorflow as tf

    return tf.add_n([tf.reduce_mean(tf.cast(v, tf.float32) ** 2) for v in outputs.values()])


def _input_images_per_s(batches, batch_size: int, count: int = 40) -> float:
    iterator = iter(batches.repeat())
    next(iterator)  # the in-memory cache fills during the first pass
    for _ in range(count):
        next(iterator)
    start = time.perf_counter()
    for _ in range(count):
        next(iterator)
    return count * batch_size / (time.perf_counter() - start)


def _forward_flops(model, size) -> int:
    """Floating-point operations of one image's inference forward (TensorFlow's profiler)."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )
    from tensorflow.python.profiler import model_analyzer, option_builder

    concrete = tf.function(lambda x: model(x, training=False)).get_concrete_function(
        tf.TensorSpec([1, *size, 3])
    )
    options = option_builder.ProfileOptionBuilder(
        option_builder.ProfileOptionBuilder.float_operation()
    )
    graph = convert_variables_to_constants_v2(concrete).graph
    report = model_analyzer.profile(graph, options=options.with_empty_output().build())
    return report.total_float_ops


if __name__ == "__main__":
    main()
