"""Steps per second of the small model under the default and the mirrored strategy.

The CPU is split into 2 logical devices; the same model (``small_cnn`` + a one-box head)
trains on the same synthetic shapes batches (one global batch per step) under
``get_strategy("default")`` (one device) and ``get_strategy("mirrored")`` (2 replicas
of half a batch each). Rounds alternate the two, so both see the same machine load;
each round times ``--steps`` steps from the end of the first to the end of the last
(no ``fit`` start-up), and the medians are reported. Not a DVC stage: a measurement to
run by hand on a quiet machine.

Usage: ``python pipelines/benchmark_strategy.py [--rounds 5 --steps 20 --batch-size 32
--image-size 64 --out data/metrics/benchmark_strategy.json]``; prints one JSON object.
"""

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import keras
import tensorflow as tf

REPLICAS = 2


class BatchClock(keras.callbacks.Callback):
    """Records the time at the end of every training batch."""

    def on_train_begin(self, logs=None):
        self.times = []

    def on_train_batch_end(self, batch, logs=None):
        self.times.append(time.perf_counter())


def shapes_batches(global_batch: int, image_size: int) -> tf.data.Dataset:
    """One global batch of synthetic shapes images and first boxes, repeated forever."""
    import numpy as np

    from kdet.datasets.shapes import draw_image

    images, boxes = [], []
    for index in range(global_batch):
        pixels, image_boxes, _ = draw_image(index, image_size=image_size, max_objects=1)
        images.append(pixels.astype("float32") / 255.0)
        boxes.append(np.asarray(image_boxes[0], "float32") / image_size)
    batch = (np.stack(images), np.stack(boxes))
    return tf.data.Dataset.from_tensors(batch).repeat().prefetch(2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32, help="global batch size")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args()
    if args.batch_size % REPLICAS:
        parser.error(f"--batch-size must be divisible by {REPLICAS}")

    (cpu,) = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(REPLICAS)]
    )
    from kdet import distribute, training
    from kdet.models import build_backbone

    def build():
        backbone = build_backbone("small_cnn", input_shape=(args.image_size, args.image_size, 3))
        pooled = keras.layers.GlobalAveragePooling2D()(backbone.output)
        box = keras.layers.Dense(4, activation="sigmoid", name="bounding_box")(pooled)
        return keras.Model(backbone.input, box)

    strategies = {
        "default": distribute.get_strategy("default"),
        "mirrored": distribute.get_strategy(
            "mirrored", devices=[f"/cpu:{i}" for i in range(REPLICAS)]
        ),
    }
    models, data = {}, shapes_batches(args.batch_size, args.image_size)
    for name, strategy in strategies.items():
        training.set_seed(0)
        per_replica = args.batch_size // strategy.num_replicas_in_sync
        models[name], global_batch = training.build_for_strategy(
            build, strategy=strategy, batch_size=per_replica, optimizer="adam", loss="mse"
        )
        assert global_batch == args.batch_size
        models[name].fit(data, epochs=1, steps_per_epoch=3, verbose=0)  # trace + warm up

    rates = {name: [] for name in strategies}
    for round_index in range(args.rounds):
        order = list(strategies) if round_index % 2 == 0 else list(reversed(strategies))
        for name in order:
            clock = BatchClock()
            models[name].fit(
                data, epochs=1, steps_per_epoch=args.steps, verbose=0, callbacks=[clock]
            )
            rates[name].append((len(clock.times) - 1) / (clock.times[-1] - clock.times[0]))

    medians = {name: statistics.median(values) for name, values in rates.items()}
    result = {
        "global_batch_size": args.batch_size,
        "image_size": args.image_size,
        "steps_per_round": args.steps,
        "rounds": args.rounds,
        "steps_per_second_median": {k: round(v, 3) for k, v in medians.items()},
        "steps_per_second_rounds": {k: [round(r, 3) for r in v] for k, v in rates.items()},
        "mirrored_over_default": round(medians["mirrored"] / medians["default"], 3),
        "replicas": {k: s.num_replicas_in_sync for k, s in strategies.items()},
        "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "tensorflow": tf.__version__,
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
