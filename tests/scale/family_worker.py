"""Each model family's training function under ``MirroredStrategy`` on 2 logical CPUs.

Run as a script (logical devices must be set before TensorFlow starts):
``python family_worker.py OUT FOLDER``. It trains every family a few steps on tiny
synthetic images written under ``FOLDER`` and writes, per case, a JSON entry to ``OUT``:
the replicas, the global batch, optimizer steps, whether every weight is finite and
whether the two replicas hold the same values; or the error, so one failing family does
not hide the others.

Cases: the bbox regressor (trained backbone, augmentation, cosine decay; checkpoints and
history CSV written by the chief), the multi-class model on the
frozen-backbone feature cache, YOLOv8 with the kdet recipe (AdamW + EMA), the R-CNN
classifier and Fast R-CNN.
"""

import argparse
import json
import traceback
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from PIL import Image

REPLICAS = 2


def report(model, strategy, optimizer=None, **extra) -> dict:
    """Replicas, steps of ``optimizer`` (default: the model's), finite weights, replicas
    agreeing, and ``extra``."""
    agree, finite = True, True
    for weight in model.weights:
        values = [v.numpy() for v in strategy.experimental_local_results(weight.value)]
        finite = finite and all(np.isfinite(v).all() for v in values)
        agree = (
            agree and len(values) == REPLICAS and all(np.array_equal(values[0], v) for v in values)
        )
    return {
        "replicas": strategy.num_replicas_in_sync,
        "optimizer_steps": int((optimizer or model.optimizer).iterations.numpy()),
        "finite": bool(finite),
        "replicas_agree": bool(agree),
        "weights": len(model.weights),
        **extra,
    }


def single_box(strategy, folder: Path) -> dict:
    from kdet.models.single_box.train import train_single_box
    from tests.models.single_box.conftest import make_single_box_records

    (folder / "single_box").mkdir(parents=True)
    records = make_single_box_records(folder / "single_box", count=24)
    result = train_single_box(
        records,
        model="bbox_regressor",
        model_options={"backbone": "small_cnn", "trainable_blocks": "all"},
        image_size=(64, 64),
        epochs=1,
        batch_size=4,
        augment=True,
        start_at_mean_box=True,
        cosine_decay=True,
        checkpoint_dir=folder / "single_box_checkpoints",
        history_csv=folder / "single_box_history.csv",
        strategy=strategy,
        verbose=0,
    )
    return report(
        result.model,
        strategy,
        info=result.info,
        loss=result.history["loss"],
        # the resumable backup (kdet.training.fit) is deleted when training completes
        written=sorted(
            p.name
            for p in [
                folder / "single_box_history.csv",
                *(folder / "single_box_checkpoints").rglob("*"),
            ]
            if p.is_file()
        ),
    )


def single_box_cache(strategy, folder: Path) -> dict:
    from kdet.models.single_box.train import train_single_box
    from tests.models.single_box.conftest import make_single_box_records

    (folder / "cache_records").mkdir(parents=True)
    records = make_single_box_records(folder / "cache_records", count=24)
    fitted = []
    original_fit = keras.Model.fit

    def recording_fit(self, *args, **kwargs):
        fitted.append(self)
        return original_fit(self, *args, **kwargs)

    keras.Model.fit = recording_fit  # to see which model trained: the head on the features
    try:
        result = train_single_box(
            records,
            model="multiclass_detector",
            model_options={"backbone": "small_cnn", "trainable_blocks": 0, "class_units": [16]},
            image_size=(64, 64),
            epochs=2,
            batch_size=4,
            augment=False,
            feature_cache_dir=folder / "features",
            strategy=strategy,
            verbose=0,
        )
    finally:
        keras.Model.fit = original_fit
    (head,) = fitted
    prediction = result.model.predict(result.data.images[:3].astype("float32"), verbose=0)
    return report(
        result.model,
        strategy,
        optimizer=head.optimizer,
        info=result.info,
        loss=result.history["loss"],
        fitted=head.name,
        features_shape=list(result.features.shape),
        prediction_finite=bool(all(np.isfinite(v).all() for v in prediction.values())),
        cache_files=sorted(p.suffix for p in (folder / "features").iterdir()),
    )


def yolov8(strategy, folder: Path) -> dict:
    from kdet.models.yolov8.train import train_yolov8
    from tests.models.yolov8.conftest import draw_records

    records = draw_records(folder / "yolov8", 16, seed=0)
    model, history = train_yolov8(
        records,
        None,
        recipe="kdet",
        image_size=64,
        batch_size=4,
        epochs=1,
        precision="float32",
        strategy=strategy,
        verbose=0,
    )
    return report(
        model,
        strategy,
        loss=history["loss"],
        use_ema=bool(model.optimizer.use_ema),
        optimizer_class=type(model.optimizer).__name__,
    )


def square_records(folder: Path):
    from kdet.datasets.records import Record, RecordSet
    from tests.models.rcnn.conftest import square_image

    folder.mkdir(parents=True)
    records = []
    for i, box in enumerate([(16, 20, 44, 52), (4, 4, 30, 34), (30, 10, 60, 40), (8, 30, 40, 60)]):
        Image.fromarray(square_image(box=box)).save(folder / f"img{i}.png")
        records.append(Record(f"img{i}.png", 64, 64, [list(map(float, box))], [0], "train"))
    return RecordSet("squares", ["square"], records, folder)


def rcnn(strategy, folder: Path) -> dict:
    from kdet.models.rcnn.train import train_rcnn_classifier

    records = square_records(folder / "rcnn")
    proposals = {
        r.image: np.array(
            [r.boxes[0], np.add(r.boxes[0], [1, 1, 1, 0]), [0, 0, 4, 4], [60, 60, 64, 64]],
            np.float32,
        )
        for r in records.records
    }
    model, info = train_rcnn_classifier(
        records,
        proposals,
        backbone="small_cnn",
        input_size=32,
        epochs=1,
        batch_size=3,
        validation_fraction=0.25,
        strategy=strategy,
    )
    return report(model, strategy, loss=info["history"]["loss"])


def fast_rcnn(strategy, folder: Path) -> dict:
    from kdet.models.rcnn.fast_rcnn import train_fast_rcnn

    records = square_records(folder / "fast_rcnn")
    proposals = {
        r.image: np.array([[0, 0, 32, 32], [32, 32, 64, 64], [10, 10, 50, 50]], np.float32)
        for r in records.records
    }
    model, info = train_fast_rcnn(
        records,
        proposals,
        image_size=64,
        pool_size=3,
        dense_units=16,
        epochs=1,
        batch_size=2,
        rois_per_image=8,
        samples_per_image=2,
        validation_fraction=0.5,  # 2 validation images: a first batch for both replicas
        strategy=strategy,
    )
    return report(model, strategy, loss=info["history"]["loss"])


CASES = {
    "single_box": single_box,
    "single_box_cache": single_box_cache,
    "yolov8": yolov8,
    "rcnn": rcnn,
    "fast_rcnn": fast_rcnn,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", help="the JSON report")
    parser.add_argument("folder", help="a scratch folder for the images")
    parser.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    args = parser.parse_args()
    (cpu,) = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(REPLICAS)]
    )
    from kdet.distribute import get_strategy

    # One strategy for every case: a second MirroredStrategy in the process would reuse
    # the first one's collective instance keys.
    strategy = get_strategy("mirrored", devices=[f"/cpu:{i}" for i in range(REPLICAS)])
    results = {}
    for name in args.cases:
        try:
            results[name] = CASES[name](strategy, Path(args.folder))
        except Exception:  # reported to the test, which fails with the traceback
            results[name] = {"error": traceback.format_exc()}
    Path(args.out).write_text(json.dumps(results))


if __name__ == "__main__":
    main()
