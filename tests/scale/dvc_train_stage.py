"""DVC stage ``train_small`` of the remote test's throwaway project (copied there as
``pipelines/train_small.py``): a few steps of a one-box regressor on the fetched shapes.

Usage: ``python pipelines/train_small.py`` (parameters from ``params.yaml: train_small``).
Writes ``data/models/small/model.keras`` and ``data/metrics/small.json``.
"""

import json
from pathlib import Path

import dvc.api
import keras
import numpy as np
from PIL import Image

from kdet import training
from kdet.datasets.records import RecordSet
from kdet.models import build_backbone


def main() -> None:
    params = dvc.api.params_show(stages="train_small")["train_small"]
    size = params["image_size"]
    records = RecordSet.load("data/raw/shapes")
    images, targets = [], []
    for record in records.records:
        image = Image.open(records.image_path(record)).convert("RGB").resize((size, size))
        images.append(np.asarray(image, "float32") / 255.0)
        scale = np.array([record.width, record.height, record.width, record.height], "float32")
        targets.append(record.boxes_array()[0] / scale)

    def build():
        backbone = build_backbone("small_cnn", input_shape=(size, size, 3))
        pooled = keras.layers.GlobalAveragePooling2D()(backbone.output)
        box = keras.layers.Dense(4, activation="sigmoid", name="bounding_box")(pooled)
        return keras.Model(backbone.input, box)

    training.set_seed(params["seed"])
    model, global_batch = training.build_for_strategy(
        build,
        strategy=params["strategy"],
        batch_size=params["batch_size"],
        optimizer="adam",
        loss="mse",
    )
    history = model.fit(
        np.stack(images), np.stack(targets), batch_size=global_batch, epochs=params["epochs"]
    )
    Path("data/models/small").mkdir(parents=True, exist_ok=True)
    model.save("data/models/small/model.keras")
    Path("data/metrics").mkdir(parents=True, exist_ok=True)
    metrics = {"loss": history.history["loss"][-1]}
    Path("data/metrics/small.json").write_text(json.dumps(metrics))


if __name__ == "__main__":
    main()
