"""Fast R-CNN: the backbone runs once per image, regions are pooled from its features.

Beyond the R-CNN tutorial: instead of cropping and classifying every proposal from the
pixels, the image goes through the backbone once; each proposal is pooled from the
feature map with RoIAlign (``tf.image.crop_and_resize`` on the features, bilinear, no
quantisation) and a small head classifies it and regresses a box correction, so the
boxes are no longer only as good as the proposals.

Example:
    >>> model = build_fast_rcnn(num_classes=1, backbone="small_cnn", image_size=64)
    >>> sorted(model.output_names)
    ['box_delta', 'class_label']
"""

from __future__ import annotations

import functools
import os

import keras
import numpy as np
import tensorflow as tf

from kdet import distribute
from kdet.datasets.records import RecordSet
from kdet.models.backbones import build_backbone
from kdet.models.rcnn.box_coder import box_regression_loss, decode_box_deltas, encode_box_deltas
from kdet.models.rcnn.classifier import _NORMALISATION
from kdet.models.rcnn.detector import select_detections
from kdet.models.rcnn.labelling import sample_rois, split_by_image
from kdet.models.rcnn.proposals import read_image
from kdet.models.registry import register_model
from kdet.training import build_for_strategy, fit, training_callbacks


@keras.saving.register_keras_serializable(package="kdet")
class RoIAlign(keras.layers.Layer):
    """Pool a fixed-size feature patch for every region of every image.

    Inputs: ``[feature_map (B, h, w, C), rois (B, R, 4)]`` with rois in ``rel_xyxy``
    (fractions of the image). Output: ``(B, R, pool_size, pool_size, C)``.
    """

    def __init__(self, pool_size: int = 7, **kwargs):
        super().__init__(**kwargs)
        self.pool_size = pool_size

    def call(self, feature_map, rois):
        batch = tf.shape(rois)[0]
        num_rois = tf.shape(rois)[1]
        x1, y1, x2, y2 = tf.unstack(tf.reshape(tf.cast(rois, tf.float32), (-1, 4)), axis=-1)
        height = tf.cast(tf.shape(feature_map)[1], tf.float32)
        width = tf.cast(tf.shape(feature_map)[2], tf.float32)
        bins = float(self.pool_size)

        def centres(start, stop, size):
            # RoIAlign samples each bin at its centre. Feature cell i covers [i, i + 1) of
            # the region scaled to the map, its value sits at i + 0.5; crop_and_resize
            # samples from the normalised first to last point, at v * (size - 1).
            start, stop = start * size, stop * size
            first = start + 0.5 * (stop - start) / bins - 0.5
            last = start + (bins - 0.5) * (stop - start) / bins - 0.5
            scale = tf.maximum(size - 1.0, 1.0)
            return tf.clip_by_value(first / scale, 0.0, 1.0), tf.clip_by_value(
                last / scale, 0.0, 1.0
            )

        top, bottom = centres(y1, y2, height)
        left, right = centres(x1, x2, width)
        boxes = tf.stack([top, left, bottom, right], axis=-1)
        indices = tf.repeat(tf.range(batch), num_rois)
        pooled = tf.image.crop_and_resize(
            tf.cast(feature_map, tf.float32), boxes, indices, (self.pool_size, self.pool_size)
        )
        channels = feature_map.shape[-1]
        shape = (batch, num_rois, self.pool_size, self.pool_size, channels)
        return tf.cast(tf.reshape(pooled, shape), self.compute_dtype)

    def compute_output_shape(self, feature_map_shape, rois_shape):
        return (rois_shape[0], rois_shape[1], self.pool_size, self.pool_size, feature_map_shape[-1])

    def get_config(self):
        return {**super().get_config(), "pool_size": self.pool_size}


@register_model("fast_rcnn")
def build_fast_rcnn(
    *,
    num_classes: int = 1,
    backbone: str = "small_cnn",
    image_size: int = 256,
    weights=None,
    trainable_blocks="all",
    pool_size: int = 7,
    dense_units: int = 256,
    dropout: float = 0.5,
) -> keras.Model:
    """Build the shared-feature (Fast R-CNN) model.

    Reference: Girshick, "Fast R-CNN", ICCV 2015.

    Args:
        num_classes: object classes (plus background at index 0).
        backbone: ``"small_cnn"`` or ``"mobilenet_v2"``.
        image_size: side of the square images the model sees (the detector resizes).
        weights, trainable_blocks: see :func:`kdet.models.backbones.build_backbone`.
        pool_size: RoIAlign output side.
        dense_units: width of the shared hidden layer of the head.
        dropout: dropout rate of the head.

    Returns:
        A ``keras.Model`` taking ``{"images": (B, S, S, 3) float 0..255, "rois": (B, R, 4)
        rel_xyxy}`` and returning ``{"class_label": (B, R, num_classes + 1) softmax,
        "box_delta": (B, R, 4)}`` (deltas as in :func:`encode_box_deltas`).
    """
    if backbone not in _NORMALISATION:
        raise ValueError(
            f"backbone must be one of {sorted(_NORMALISATION)}. Received: backbone={backbone!r}"
        )
    shape = (image_size, image_size, 3)
    features = build_backbone(
        backbone, input_shape=shape, weights=weights, trainable_blocks=trainable_blocks
    )
    images = keras.Input(shape, name="images")
    rois = keras.Input((None, 4), name="rois")
    scale, offset = _NORMALISATION[backbone]
    feature_map = features(keras.layers.Rescaling(scale, offset, name="normalise")(images))
    pooled = RoIAlign(pool_size, name="roi_align")(feature_map, rois)
    flat_size = pool_size * pool_size * features.output_shape[-1]
    x = keras.layers.Reshape((-1, flat_size), name="head_flatten")(pooled)
    x = keras.layers.Dense(dense_units, activation="relu", name="head_dense")(x)
    x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    class_label = keras.layers.Dense(
        num_classes + 1, activation="softmax", dtype="float32", name="class_label"
    )(x)
    box_delta = keras.layers.Dense(4, dtype="float32", name="box_delta")(x)
    return keras.Model(
        {"images": images, "rois": rois},
        {"class_label": class_label, "box_delta": box_delta},
        name=f"fast_rcnn_{backbone}",
    )


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    return tf.image.resize(image, (size, size)).numpy()


def build_roi_dataset(
    record_set: RecordSet,
    proposals: dict[str, np.ndarray],
    *,
    image_size: int,
    rois_per_image: int = 32,
    positive_fraction: float = 0.25,
    samples_per_image: int = 4,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Resized images and sampled regions with targets, ``samples_per_image`` draws each.

    Returns:
        ``{"images": uint8 (M, S, S, 3), "rois": (M, R, 4) rel_xyxy, "labels": (M, R),
        "box_targets": (M, R, 5)}`` (deltas + positive flag).
    """
    rng = np.random.default_rng(seed)
    images, rois, labels, targets = [], [], [], []
    for record in record_set.records:
        if record.image not in proposals:
            raise KeyError(f"No proposals for image {record.image!r}; run the proposals stage")
        image = read_image(record_set.image_path(record))
        scale = np.asarray([record.width, record.height] * 2, np.float32)
        resized = np.clip(np.round(_resize(image, image_size)), 0, 255).astype(np.uint8)
        for _ in range(samples_per_image):
            regions = sample_rois(
                proposals[record.image],
                record.boxes_array(),
                record.classes_array(),
                rois_per_image=rois_per_image,
                positive_fraction=positive_fraction,
                rng=rng,
            )
            positive = (regions.labels > 0).astype(np.float32)[:, None]
            deltas = encode_box_deltas(regions.boxes, regions.matched) * positive
            images.append(resized)
            rois.append(regions.boxes / scale)
            labels.append(regions.labels)
            targets.append(np.concatenate([deltas, positive], axis=1))
    return {
        "images": np.stack(images),
        "rois": np.stack(rois).astype(np.float32),
        "labels": np.stack(labels).astype(np.int32),
        "box_targets": np.stack(targets).astype(np.float32),
    }


def _flip(example):
    """Mirror images, regions and box targets left-right."""
    images, rois, labels, targets = example
    images = tf.reverse(images, axis=[1])
    x1, y1, x2, y2 = tf.unstack(rois, axis=-1)
    rois = tf.stack([1.0 - x2, y1, 1.0 - x1, y2], axis=-1)
    targets = targets * tf.constant([-1.0, 1.0, 1.0, 1.0, 1.0])
    return images, rois, labels, targets


def roi_pipeline(
    data: dict[str, np.ndarray], *, batch_size: int, augment: bool, shuffle: bool, seed: int
) -> tf.data.Dataset:
    """Batches ``({"images", "rois"}, {"class_label", "box_delta"})`` for ``fit``."""
    ds = tf.data.Dataset.from_tensor_slices(
        (data["images"], data["rois"], data["labels"], data["box_targets"])
    )
    if shuffle:
        ds = ds.shuffle(len(data["images"]), seed=seed, reshuffle_each_iteration=True)

    def prepare(images, rois, labels, targets):
        example = (tf.cast(images, tf.float32), rois, labels, targets)
        if augment:
            flip = tf.random.uniform([], seed=seed) < 0.5
            example = tf.cond(flip, lambda: _flip(example), lambda: example)
            images = tf.image.random_brightness(example[0], 25.0, seed=seed)
            images = tf.image.random_contrast(images, 0.8, 1.2, seed=seed)
            example = (tf.clip_by_value(images, 0.0, 255.0), *example[1:])
        images, rois, labels, targets = example
        return {"images": images, "rois": rois}, {"class_label": labels, "box_delta": targets}

    # Sequential when augmenting: the random ops keep state, so a parallel map would hand
    # out the draws in a nondeterministic order and a seed would not repeat a run.
    ds = ds.map(prepare, num_parallel_calls=None if augment else tf.data.AUTOTUNE)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def train_fast_rcnn(
    record_set: RecordSet,
    proposals: dict[str, np.ndarray],
    *,
    backbone: str = "small_cnn",
    image_size: int = 256,
    weights=None,
    pool_size: int = 7,
    dense_units: int = 256,
    epochs: int = 10,
    batch_size: int = 8,
    learning_rate: float = 1e-3,
    rois_per_image: int = 32,
    positive_fraction: float = 0.25,
    samples_per_image: int = 4,
    box_loss_weight: float = 1.0,
    validation_fraction: float = 0.1,
    augment: bool = True,
    seed: int = 42,
    early_stopping_patience: int | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    history_csv: str | os.PathLike | None = None,
    log_to_mlflow: bool = False,
    strategy: str | tf.distribute.Strategy = "auto",
) -> tuple[keras.Model, dict]:
    """Sample regions and train :func:`build_fast_rcnn` (classes + box corrections).

    Images (never regions) are split into training and validation. Arguments not listed
    here match :func:`build_fast_rcnn`, :func:`build_roi_dataset` and
    :func:`kdet.models.rcnn.train.train_rcnn_classifier` (``batch_size`` images per
    step per replica; ``strategy`` as there).

    Returns:
        ``(model, {"history": per-epoch metrics, "validation_images": [image names held
        out]})``, as :func:`~kdet.models.rcnn.train.train_rcnn_classifier`.
    """
    keras.utils.set_random_seed(seed)
    train_records, val_records = split_by_image(record_set, validation_fraction, seed)
    sampling = {
        "image_size": image_size,
        "rois_per_image": rois_per_image,
        "positive_fraction": positive_fraction,
        "seed": seed,
    }
    train = build_roi_dataset(
        train_records, proposals, samples_per_image=samples_per_image, **sampling
    )
    strategy = distribute.get_strategy(strategy)
    # box_regression_loss averages over a replica's positives; Keras wraps it in a
    # keras.losses.Loss, which scales it by 1 / replicas like the class loss.
    model, global_batch = build_for_strategy(
        functools.partial(
            build_fast_rcnn,
            num_classes=len(record_set.class_names),
            backbone=backbone,
            image_size=image_size,
            weights=weights,
            pool_size=pool_size,
            dense_units=dense_units,
        ),
        strategy=strategy,
        batch_size=batch_size,
        optimizer=keras.optimizers.Adam(learning_rate),
        loss={"class_label": "sparse_categorical_crossentropy", "box_delta": box_regression_loss},
        loss_weights={"class_label": 1.0, "box_delta": box_loss_weight},
        metrics={"class_label": ["accuracy"]},
    )
    options = {"batch_size": global_batch, "seed": seed}
    val_data = None
    if len(val_records):
        val = build_roi_dataset(val_records, proposals, samples_per_image=1, **sampling)
        val_data = roi_pipeline(val, augment=False, shuffle=False, **options)
    history = fit(
        model,
        roi_pipeline(train, augment=augment, shuffle=True, **options),
        validation_data=val_data,
        epochs=epochs,
        verbose=2,
        checkpoint_dir=checkpoint_dir if distribute.is_chief(strategy) else None,
        callbacks=training_callbacks(
            early_stopping_patience=early_stopping_patience,
            monitor="val_loss" if val_data is not None else "loss",
            history_csv=history_csv,
            log_to_mlflow=log_to_mlflow,
            chief=distribute.is_chief(strategy),
        ),
    )
    return model, {
        "history": history.history,
        "validation_images": [record.image for record in val_records.records],
    }


class FastRCNNDetector:
    """One image + its proposals -> detections, the backbone run once.

    Selective search is not part of this detector: pass each image's proposals.

    Args:
        model: a :func:`build_fast_rcnn` model.
        score_threshold, iou_threshold, max_detections, max_proposals: as for
            :class:`kdet.models.rcnn.detector.RCNNDetector`.
        regress: apply the predicted box corrections (``False`` keeps the proposals).
    """

    def __init__(
        self,
        model: keras.Model,
        *,
        score_threshold: float = 0.5,
        iou_threshold: float = 0.3,
        max_detections: int = 20,
        max_proposals: int | None = None,
        regress: bool = True,
    ):
        self.model = model
        self.image_size = int(model.input["images"].shape[1])
        self.score_threshold = score_threshold
        self.iou_threshold = iou_threshold
        self.max_detections = max_detections
        self.max_proposals = max_proposals
        self.regress = regress
        self.detect = tf.function(
            self.detect_eager,
            input_signature=[
                tf.TensorSpec([None, None, 3], tf.uint8),
                tf.TensorSpec([None, 4], tf.float32),
            ],
        )

    def detect_eager(self, image: tf.Tensor, proposals: tf.Tensor) -> dict[str, tf.Tensor]:
        """Detections for one ``uint8 (H, W, 3)`` image and its ``(N, 4)`` xyxy proposals.

        Returns ``{"boxes": (M, 4) xyxy pixels, "scores": (M,), "classes": (M,) int32}``.
        """
        proposals = tf.reshape(tf.cast(proposals, tf.float32), (-1, 4))
        if self.max_proposals is not None:
            proposals = proposals[: self.max_proposals]
        shape = tf.cast(tf.shape(image), tf.float32)
        scale = tf.stack([shape[1], shape[0], shape[1], shape[0]])
        resized = tf.image.resize(tf.cast(image, tf.float32), (self.image_size,) * 2)
        rois = proposals / scale
        out = self.model({"images": resized[tf.newaxis], "rois": rois[tf.newaxis]}, training=False)
        boxes = proposals
        if self.regress:
            boxes = decode_box_deltas(rois, out["box_delta"][0]) * scale
            boxes = tf.clip_by_value(boxes, 0.0, scale)
        return select_detections(
            boxes,
            out["class_label"][0, :, 1:],
            score_threshold=self.score_threshold,
            iou_threshold=self.iou_threshold,
            max_detections=self.max_detections,
        )

    def __call__(self, image, proposals) -> dict[str, tf.Tensor]:
        """Run the compiled :meth:`detect` on array-likes."""
        return self.detect(
            tf.convert_to_tensor(image, tf.uint8), tf.convert_to_tensor(proposals, tf.float32)
        )
