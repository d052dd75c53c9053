"""A training process for the strategy tests (run as a script, one per worker).

TensorFlow's devices and a multi-worker cluster must be set up before TensorFlow starts,
so each case runs in a fresh process and reports through a JSON file (``OUT``). The
data is the shapes dataset, fetched into ``DATA`` and read through ``kdet.data``:

* ``mirrored OUT DATA``: splits the CPU into 2 logical devices, trains the small model a few
  steps under the default strategy and under ``MirroredStrategy`` from the same initial
  weights and data, and writes whether the replicas agree, how far the mirrored updates
  are from the single-device ones, and what the kdet.distribute helpers give on 2
  replicas.
* ``multi_worker OUT DATA``: one worker of the cluster in ``TF_CONFIG``; trains a few steps
  under ``MultiWorkerMirroredStrategy`` and writes a checksum of its final weights.
"""

import argparse
import hashlib
import json

import keras
import numpy as np
import tensorflow as tf

IMAGE_SIZE = 32
NUM_IMAGES = 32


def shapes_dataset(folder: str, batch_size: int) -> tf.data.Dataset:
    """Fetched shapes through kdet's input pipeline: (images, first box in rel_xyxy).

    The same seed gives identical files, so every process builds the same batches.
    """
    from kdet.data import build_pipeline, from_records
    from kdet.datasets import fetch

    records = fetch("shapes", folder, num_images=NUM_IMAGES, image_size=IMAGE_SIZE, seed=3)
    batches = build_pipeline(
        from_records(records),
        image_size=(IMAGE_SIZE, IMAGE_SIZE),
        batch_size=batch_size,
        normalization="unit",
        bounding_box_format="rel_xyxy",
        drop_remainder=True,
    )
    return batches.map(lambda b: (b["images"], b["bounding_boxes"]["boxes"][:, 0]))


def small_box_regressor():
    """The ``small_cnn`` backbone (with batch norm) and a 4-output sigmoid box head
    (``rel_xyxy``)."""
    from kdet.models import build_backbone

    backbone = build_backbone("small_cnn", input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3))
    features = keras.layers.GlobalAveragePooling2D(name="pool")(backbone.output)
    # Start near the centred box (0.25, 0.25, 0.75, 0.75), not the empty box at 0.5, so
    # the IoU metric is informative from the first step.
    start = keras.initializers.Constant([-1.1, -1.1, 1.1, 1.1])
    boxes = keras.layers.Dense(
        4, activation="sigmoid", bias_initializer=start, name="bounding_box"
    )(features)
    return keras.Model(backbone.input, boxes, name="small_box_regressor")


def train(strategy, folder: str, *, per_replica_batch: int, steps: int, seed: int = 0):
    """Build under ``strategy`` (seeded), fit ``steps`` steps; returns (model, initial weights)."""
    from kdet import training
    from kdet.metrics.keras_metrics import BoxIoU

    training.set_seed(seed)
    model, global_batch = training.build_for_strategy(
        small_box_regressor,
        strategy=strategy,
        batch_size=per_replica_batch,
        optimizer=keras.optimizers.SGD(0.05),
        loss="mse",
        metrics=[BoxIoU("rel_xyxy")],
    )
    initial = [np.array(w.numpy()) for w in model.weights]
    from kdet.distribute import with_shard_policy

    data = with_shard_policy(shapes_dataset(folder, global_batch).take(steps).repeat())
    history = model.fit(data, epochs=1, steps_per_epoch=steps, verbose=0)
    return model, initial, history.history


def checksum(weights) -> str:
    """SHA-256 of a model's weights (or of a list of arrays), in order."""
    digest = hashlib.sha256()
    for weight in getattr(weights, "weights", weights):
        digest.update(np.ascontiguousarray(weight, dtype="float32").tobytes())
    return digest.hexdigest()


def run_mirrored(out: str, folder: str) -> None:
    (cpu,) = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
    )
    from kdet.distribute import distribute_dataset, get_strategy, global_batch_size, scale_loss

    # One device with batches of 8, then 2 replicas of 4 each on the same batches.
    single, single_initial, single_logs = train("default", folder, per_replica_batch=8, steps=2)
    strategy = get_strategy("mirrored", devices=["/cpu:0", "/cpu:1"])
    mirrored, mirrored_initial, mirrored_logs = train(
        strategy, folder, per_replica_batch=4, steps=2
    )
    agree = {}
    for weight in mirrored.weights:
        values = [v.numpy() for v in strategy.experimental_local_results(weight.value)]
        agree[weight.path] = len(values) == 2 and all(np.array_equal(values[0], v) for v in values)
    update_error = {}
    for weight, a0, a1, b0, b1 in zip(
        mirrored.weights,
        single_initial,
        [w.numpy() for w in single.weights],
        mirrored_initial,
        [w.numpy() for w in mirrored.weights],
        strict=True,
    ):
        single_update, mirrored_update = a1 - a0, b1 - b0
        norm = np.linalg.norm(single_update)
        update_error[weight.path] = float(np.linalg.norm(mirrored_update - single_update) / norm)
    per_replica_loss = strategy.run(lambda: scale_loss(tf.constant(3.0)))
    first_batch = next(iter(distribute_dataset(tf.data.Dataset.range(8).batch(4), strategy)))
    result = {
        "replicas": strategy.num_replicas_in_sync,
        "global_batch": global_batch_size(4, strategy),
        "scaled_losses": [float(v) for v in strategy.experimental_local_results(per_replica_loss)],
        "first_batch": [
            v.numpy().tolist() for v in strategy.experimental_local_results(first_batch)
        ],
        "batch_norm_synchronized": all(
            layer.synchronized
            for layer in mirrored.layers
            if isinstance(layer, keras.layers.BatchNormalization)
        ),
        "optimizer_learning_rate": float(mirrored.optimizer.learning_rate.numpy()),
        "optimizer_steps": int(mirrored.optimizer.iterations.numpy()),
        "logs": {"default": single_logs, "mirrored": mirrored_logs},
        "same_initial": checksum(single_initial) == checksum(mirrored_initial),
        "replicas_agree": agree,
        "update_error": update_error,
    }
    with open(out, "w") as f:
        json.dump(result, f)


def run_multi_worker(out: str, folder: str) -> None:
    from kdet.distribute import get_strategy, is_chief

    strategy = get_strategy("multi_worker", communication="ring")
    model, initial, logs = train(strategy, folder, per_replica_batch=4, steps=3)
    result = {
        "logs": logs,
        "initial_checksum": checksum(initial),
        "replicas": strategy.num_replicas_in_sync,
        "chief": is_chief(strategy),
        "checksum": checksum(model),
        "trained": bool(model.optimizer.iterations.numpy() == 3),
    }
    with open(out, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", choices=["mirrored", "multi_worker"])
    parser.add_argument("out", help="the JSON report")
    parser.add_argument("data", help="a folder for the shapes dataset")
    args = parser.parse_args()
    {"mirrored": run_mirrored, "multi_worker": run_multi_worker}[args.mode](args.out, args.data)
