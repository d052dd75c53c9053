"""kdet.data: tf.data input pipelines yielding KerasCV detection batches.

Raw examples come from a record set (:func:`from_records`) or a prepared TFDS dataset
(:func:`from_tfds`); :func:`build_pipeline` decodes, resizes, caches, batches (``-1``
padded), augments and normalises them.

Example:
    >>> from kdet.data import build_pipeline, from_records
    >>> from kdet.datasets.records import RecordSet
    >>> records = RecordSet.load("data/raccoon")  # doctest: +SKIP
    >>> train = build_pipeline(from_records(records, "train"), augment=True, shuffle=True,
    ...                        seed=0, normalization="vgg16")  # doctest: +SKIP
"""

from kdet.data.augment import augment_batch, default_augmenters
from kdet.data.decode import decode_image, has_image_signature, read_image
from kdet.data.normalize import NORMALIZATIONS, normalize
from kdet.data.pipeline import BOUNDING_BOX_FORMATS, build_pipeline
from kdet.data.resize import resize_geometry, resize_with_boxes
from kdet.data.sources import from_records, from_tfds

__all__ = [
    "BOUNDING_BOX_FORMATS",
    "NORMALIZATIONS",
    "augment_batch",
    "build_pipeline",
    "decode_image",
    "default_augmenters",
    "from_records",
    "from_tfds",
    "has_image_signature",
    "normalize",
    "read_image",
    "resize_geometry",
    "resize_with_boxes",
]
