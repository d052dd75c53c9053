"""TFDS reader: a TensorFlow Datasets detection dataset into kdet records.

``path`` is a TFDS name (``"voc/2007"``, with ``data_dir=`` where it is prepared) or a
builder folder (``.../voc/2007/5.0.0``, read with ``tfds.builder_from_directory``).
Nothing is downloaded unless ``download=True``: a prepared dataset loads offline.
The features used are TFDS's detection conventions: ``image``, ``objects/bbox``
(normalised ``[ymin, xmin, ymax, xmax]``), ``objects/label`` (a ``ClassLabel`` whose
names become the class names); ``objects/is_crowd`` objects are dropped and counted,
``objects/is_difficult`` ones kept and counted. The TFDS splits are kept with their
names (``train``, ``validation``, ``test``). The encoded image bytes are written as
files under ``out_dir/images/<split>/`` (named after ``image/filename`` when the
dataset has it) and then checked like any other format's images.

Example:
    >>> from kdet.datasets import tfds_source
    >>> tfds_source.fetch("data/raw/voc07", path="voc/2007", data_dir="~/tensorflow_datasets")
    ... # doctest: +SKIP
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from kdet.datasets import folder as fd
from kdet.datasets.records import RecordSet
from kdet.errors import AnnotationError

_MAGIC = {b"\xff\xd8\xff": ".jpg", b"\x89PNG": ".png", b"GIF8": ".gif", b"BM": ".bmp"}


def _extension(data: bytes) -> str:
    for magic, extension in _MAGIC.items():
        if data.startswith(magic):
            return extension
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ".webp"
    return ".img"


def load_builder(
    path: str | os.PathLike, *, data_dir: str | os.PathLike | None = None, download: bool = False
):
    """The TFDS builder of ``path`` (a dataset name or a prepared builder folder).

    Raises:
        AnnotationError: the dataset is not prepared (and ``download`` is false) or
            unknown; the message names ``data_dir``.

    Example:
        >>> load_builder("voc/2007", data_dir="~/tensorflow_datasets")  # doctest: +SKIP
    """
    import tensorflow_datasets as tfds

    text = os.fspath(path)
    if Path(text).expanduser().is_dir():
        return tfds.builder_from_directory(str(Path(text).expanduser()))
    kwargs = {"data_dir": os.fspath(Path(data_dir).expanduser())} if data_dir else {}
    try:
        builder = tfds.builder(text, **kwargs)
    except Exception as err:  # DatasetNotFoundError and friends
        raise AnnotationError(text, f"not a TFDS dataset name or folder ({err})") from None
    if download:
        builder.download_and_prepare()
    elif not builder.is_prepared():
        raise AnnotationError(
            text,
            f"the TFDS dataset is not prepared in {builder.data_dir}; pass data_dir= where it "
            "is, or download=True",
        )
    return builder


def read(builder, staging: Path, report: fd.ImportReport) -> tuple[list[fd.Sample], list[str]]:
    """Write the builder's images under ``staging`` and return samples and class names.

    Raises:
        AnnotationError: the dataset lacks ``image`` or ``objects/bbox``/``label``.

    Example:
        >>> samples, names = read(load_builder("voc/2007"), Path("tmp"), report)
        ... # doctest: +SKIP
    """
    import tensorflow_datasets as tfds

    features = builder.info.features
    where = builder.info.full_name
    try:
        objects = features["objects"]
        names = list(objects["label"].names)
        objects["bbox"]  # noqa: B018 (checked for presence)
        features["image"]  # noqa: B018
    except (KeyError, AttributeError, TypeError) as err:
        raise AnnotationError(
            where, f"not a detection dataset: needs image, objects/bbox, objects/label ({err})"
        ) from None
    samples = []
    for split in sorted(builder.info.splits):
        dataset = builder.as_dataset(split=split, decoders={"image": tfds.decode.SkipDecoding()})
        for index, example in enumerate(tfds.as_numpy(dataset)):
            data = bytes(example["image"])
            filename = example.get("image/filename")
            stem = f"{index:06d}"
            if filename is not None:
                base = Path(bytes(filename).decode("utf-8", "replace")).stem
                stem = f"{index:06d}_{re.sub(r'[^A-Za-z0-9._-]+', '_', base)[:80]}"
            relative = f"{split}/{stem}{_extension(data)}"
            target = staging / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            found = example["objects"]
            crowd = found.get("is_crowd")
            difficult = found.get("is_difficult")
            boxes, labels = [], []
            for k, (box, label) in enumerate(zip(found["bbox"], found["label"], strict=True)):
                if crowd is not None and crowd[k]:
                    report.count("crowd")
                    continue
                ymin, xmin, ymax, xmax = (float(v) for v in box)
                boxes.append([xmin, ymin, xmax, ymax])
                labels.append(names[int(label)])
            samples.append(
                fd.Sample(
                    target,
                    relative,
                    boxes,
                    labels,
                    split,
                    annotation=f"{where}[{split}][{index}]",
                    normalized=True,
                    difficult=int(sum(difficult)) if difficult is not None else 0,
                )
            )
    return samples, names


def fetch(
    out_dir: str | os.PathLike,
    *,
    path: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    download: bool = False,
    fractions: dict[str, float] | None = None,
    seed: int = 0,
    classes: Sequence[str] | None = None,
    on_invalid: str = "skip",
    name: str | None = None,
    progress: bool = True,
) -> RecordSet:
    """Import a TFDS detection dataset into ``out_dir`` (``images/``, ``records.json``).

    Args:
        out_dir: dataset folder to write.
        path: TFDS name (``"voc/2007"``) or a prepared builder folder.
        data_dir: TFDS data folder holding the prepared dataset (default: TFDS's).
        download: let TFDS download and prepare the dataset (default: offline only).
        fractions: split used when the dataset has fewer than two splits (default
            ``{"train": 0.8, "test": 0.2}``).
        seed: seed of that split.
        classes: class order and filter (default: the ``ClassLabel`` names).
        on_invalid: ``"skip"`` or ``"raise"`` for a corrupt image or an unusable box.
        name: dataset name (default: the TFDS name, ``/`` replaced by ``_``).
        progress: show a progress bar.

    Returns:
        The saved :class:`RecordSet`; ``import_report.json`` is written next to it.

    Example:
        >>> fetch("data/raw/voc07", path="voc/2007", data_dir="/data/tfds")  # doctest: +SKIP
    """
    builder = load_builder(path, data_dir=data_dir, download=download)
    report = fd.ImportReport("tfds", path)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".tfds-", dir=out_dir))
    try:
        samples, names = read(builder, staging, report)
        return fd.import_samples(
            samples,
            out_dir,
            name=name or builder.info.name,
            report=report,
            class_order=names,
            classes=classes,
            fractions=fractions,
            seed=seed,
            on_invalid=on_invalid,
            progress=progress,
        )
    finally:
        shutil.rmtree(staging, ignore_errors=True)
