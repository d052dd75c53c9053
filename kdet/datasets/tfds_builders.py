"""TFDS builders for kdet's datasets, so prepared data loads from any TensorFlow code.

Each source has a builder (``kdet_caltech101``, ``kdet_raccoon``, ``kdet_open_images``,
``kdet_shapes``) that turns a fetched record-set folder (``records.json`` + images) into
TFDS files. The features are TFDS's detection conventions:

- ``image``: the encoded image file as fetched (decodes to ``uint8 (H, W, 3)``);
- ``image/filename``: its path inside the record set;
- ``objects``: ``Sequence({"bbox": BBoxFeature, "label": ClassLabel})`` with boxes
  **normalised** ``[ymin, xmin, ymax, xmax]`` (TFDS's convention, not kdet's ``xyxy``).

A prepared dataset needs neither kdet nor its records to load: TFDS reads the
definition back from its files.

Example:
    >>> prepare("raccoon", "data/raccoon", "data/tfds")  # doctest: +SKIP
    >>> import tensorflow_datasets as tfds
    >>> train = tfds.load("kdet_raccoon", split="train", data_dir="data/tfds")  # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path

import tensorflow as tf
import tensorflow_datasets as tfds

from kdet.datasets.records import RECORDS_FILE, RecordSet
from kdet.errors import AnnotationError, ImageError


class KdetDetectionBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Shared builder: one kdet record set folder -> a TFDS detection dataset.

    Args:
        records_dir: folder with ``records.json`` and the images; needed to prepare the
            dataset, not to load a prepared one.
        **kwargs: passed to ``tfds.core.GeneratorBasedBuilder`` (``data_dir``, ...).

    Example:
        >>> builder = KdetShapes(records_dir="data/shapes", data_dir="data/tfds")
        ... # doctest: +SKIP
        >>> builder.download_and_prepare()  # doctest: +SKIP
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}
    DESCRIPTION = ""
    HOMEPAGE = ""

    def __init__(self, *, records_dir: str | os.PathLike | None = None, **kwargs):
        self._records_dir = None if records_dir is None else Path(records_dir)
        self._record_set = None
        super().__init__(**kwargs)

    def _records(self) -> RecordSet:
        if self._records_dir is None:
            raise ValueError(
                f"{self.name}: preparing needs the fetched records. Received: records_dir=None"
            )
        if self._record_set is None:
            self._record_set = RecordSet.load(self._records_dir)
        return self._record_set

    def _info(self) -> tfds.core.DatasetInfo:
        # Without records (loading a prepared dataset) the class names come back from
        # the dataset's files.
        names = None if self._records_dir is None else self._records().class_names
        return self.dataset_info_from_configs(
            description=self.DESCRIPTION,
            homepage=self.HOMEPAGE,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(None, None, 3)),
                    "image/filename": tfds.features.Text(),
                    "objects": tfds.features.Sequence(
                        {
                            "bbox": tfds.features.BBoxFeature(),
                            "label": tfds.features.ClassLabel(names=names),
                        }
                    ),
                }
            ),
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # the records are fetched by kdet.datasets, not by TFDS
        record_set = self._records()
        unassigned = [r.image for r in record_set.records if not r.split]
        if unassigned:
            raise AnnotationError(
                self._records_dir / RECORDS_FILE,
                f"{len(unassigned)} records have no split (first: {unassigned[0]})",
            )
        names = sorted({r.split for r in record_set.records})
        return {name: self._generate_examples(record_set.split(name)) for name in names}

    def _generate_examples(self, record_set: RecordSet):
        for record in record_set.records:
            path = record_set.image_path(record)
            # Decoding once here turns a bad image into an error naming it now, instead
            # of an anonymous decode error when the prepared dataset is read.
            try:
                shape = tf.io.decode_image(
                    tf.io.read_file(str(path)), channels=3, expand_animations=False
                ).shape
            except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError) as err:
                raise ImageError(path, f"cannot decode image ({err.message})") from None
            if (shape[0], shape[1]) != (record.height, record.width):
                raise AnnotationError(
                    path,
                    f"image is {shape[1]}x{shape[0]} but its record says "
                    f"{record.width}x{record.height}",
                )
            bboxes = [
                tfds.features.BBox(
                    ymin=y1 / record.height,
                    xmin=x1 / record.width,
                    ymax=y2 / record.height,
                    xmax=x2 / record.width,
                )
                for x1, y1, x2, y2 in record.boxes_array().tolist()
            ]
            yield (
                record.image,
                {
                    "image": str(path),
                    "image/filename": record.image,
                    "objects": {"bbox": bboxes, "label": record.classes_array()},
                },
            )


class KdetCaltech101(KdetDetectionBuilder):
    """Caltech-101 categories with their object boxes (``kdet_caltech101``)."""

    DESCRIPTION = "Caltech-101 images of the chosen categories, one box per image."
    HOMEPAGE = "https://data.caltech.edu/records/mzrjq-6wc02"


class KdetRaccoon(KdetDetectionBuilder):
    """Dat Tran's raccoon dataset (``kdet_raccoon``)."""

    DESCRIPTION = "Raccoon images with Pascal VOC boxes (datitran/raccoon_dataset)."
    HOMEPAGE = "https://github.com/datitran/raccoon_dataset"


class KdetOpenImages(KdetDetectionBuilder):
    """A class-filtered Open Images subset (``kdet_open_images``)."""

    DESCRIPTION = "Open Images V7 images and boxes of the chosen classes."
    HOMEPAGE = "https://storage.googleapis.com/openimages/web/index.html"


class KdetShapes(KdetDetectionBuilder):
    """Kdet's seeded synthetic shapes (``kdet_shapes``)."""

    DESCRIPTION = "Synthetic images of rectangles, ellipses and triangles with exact boxes."
    HOMEPAGE = "https://github.com/kdet"


BUILDERS = {
    "caltech101": KdetCaltech101,
    "raccoon": KdetRaccoon,
    "open_images": KdetOpenImages,
    "shapes": KdetShapes,
}


def prepare(
    name: str, records_dir: str | os.PathLike, data_dir: str | os.PathLike
) -> tfds.core.DatasetBuilder:
    """Prepare the TFDS dataset ``kdet_<name>`` from a fetched record set folder.

    An already prepared version in ``data_dir`` is kept as it is (TFDS's rule); delete
    ``data_dir/kdet_<name>`` to rebuild it from changed records.

    Args:
        name: source name: ``"caltech101"``, ``"raccoon"``, ``"open_images"`` or
            ``"shapes"``.
        records_dir: folder with ``records.json`` and the images.
        data_dir: TFDS data folder to write to.

    Returns:
        The prepared builder (``builder.as_dataset(split=...)``, ``builder.info``).

    Example:
        >>> builder = prepare("shapes", "data/shapes", "data/tfds")  # doctest: +SKIP
        >>> builder.info.splits["train"].num_examples  # doctest: +SKIP
        160
    """
    if name not in BUILDERS:
        raise ValueError(f"name must be one of {sorted(BUILDERS)}. Received: name={name!r}")
    builder = BUILDERS[name](records_dir=records_dir, data_dir=os.fspath(data_dir))
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(try_download_gcs=False)
    )
    return builder
