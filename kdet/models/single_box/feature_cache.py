"""A disk cache of frozen-backbone features, so heads train without re-running the backbone.

A frozen backbone on un-augmented images gives the same features every epoch: computing
them once and training the head on them is what makes the tutorial models fast on a CPU.
An entry holds the features of every record of a dataset (so the bbox regressor and the
multi-class model, which both use Caltech-101 airplanes, share it) and is keyed by:

* the records (image paths, sizes, boxes, classes, splits),
* the backbone's name and a hash of its weight values (ImageNet, a file or a seeded
  random init all hash differently),
* the input size and the precision policy.

Any change gives a new key, so a stale entry is never read.

Example:
    >>> cache = FeatureCache("data/features")
    >>> features = cache.get_or_compute(extractor, data.images, records=records,
    ...                                 precision="mixed_bfloat16")  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from kdet import atomic
from kdet.datasets.records import RecordSet


def weights_fingerprint(model: keras.Model) -> str:
    """SHA-256 of every weight value of ``model`` (names, shapes and bytes)."""
    digest = hashlib.sha256()
    for weight in model.weights:
        value = np.ascontiguousarray(keras.ops.convert_to_numpy(weight))
        digest.update(f"{weight.path}:{value.shape}:{value.dtype}".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


class FeatureCache:
    """Backbone features on disk under ``folder``, one ``.npy`` + ``.json`` pair per key.

    Args:
        folder: the cache folder (kdet's pipelines use ``data/features``).
    """

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)

    def key(self, extractor: keras.Model, *, records: RecordSet, precision: str) -> dict:
        """The cache key of ``extractor`` (images -> features) on ``records``."""
        image_shape = tuple(extractor.input_shape[1:3])
        return {
            "dataset": records.name,
            "records_sha256": records.fingerprint(),
            "backbone": _backbone_name(extractor),
            "weights_sha256": weights_fingerprint(extractor),
            "image_size": list(image_shape),
            "precision": precision,
        }

    def path(self, key: dict) -> Path:
        """The ``.npy`` file of ``key``."""
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        height, width = key["image_size"]
        name = f"{key['dataset']}_{key['backbone']}_{height}x{width}_{key['precision']}_{digest}"
        return self.folder / f"{name}.npy"

    def get_or_compute(
        self,
        extractor: keras.Model,
        images: np.ndarray,
        *,
        records: RecordSet,
        precision: str,
        batch_size: int = 32,
        verbose="auto",
    ) -> tuple[np.ndarray, bool]:
        """Features of ``images`` (one row per record), read from disk or computed and stored.

        Args:
            extractor: images -> backbone features (see ``split_at_backbone``).
            images: ``uint8 (N, H, W, 3)``, row ``i`` from ``records.records[i]``.
            records: the record set the images come from (part of the key).
            precision: the dtype policy the extractor runs under (part of the key).
            batch_size: images per forward pass.
            verbose: Keras ``predict`` verbosity.

        Returns:
            ``(float32 features (N, ...), hit)`` where ``hit`` says whether they came
            from disk.
        """
        if len(images) != len(records):
            raise ValueError(
                f"images must have one row per record ({len(records)}). "
                f"Received: {len(images)} images"
            )
        key = self.key(extractor, records=records, precision=precision)
        path = self.path(key)
        meta_path = path.with_suffix(".json")
        if path.exists() and meta_path.exists() and json.loads(meta_path.read_text()) == key:
            features = np.load(path)
            if len(features) == len(images):
                return features, True
        batches = (
            tf.data.Dataset.from_tensor_slices(images)
            .batch(batch_size)
            .map(lambda x: tf.cast(x, tf.float32))  # float32 one batch at a time
        )
        features = extractor.predict(batches, verbose=verbose)
        features = np.asarray(features, dtype=np.float32)
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic.write_file(path, lambda f: np.save(f, features))
        atomic.write_text(meta_path, json.dumps(key, indent=1))
        return features, False


def _backbone_name(extractor: keras.Model) -> str:
    nested = [layer for layer in extractor.layers if isinstance(layer, keras.Model)]
    return nested[-1].name if nested else extractor.name
