"""Pascal VOC reader: XML annotations (parsed with ``defusedxml``) next to images.

Accepted layouts of ``path``:

- the VOC devkit layout: ``JPEGImages/`` + ``Annotations/*.xml`` + optional
  ``ImageSets/Main/{train,val,trainval,test}.txt`` (the dataset's own splits, names
  kept; ``trainval`` is used only when neither ``train`` nor ``val`` is there). The
  folder may also be found one or two levels down (``VOCdevkit/VOC2007``);
- one folder per split (``path/train/``, ``path/val/``, ``path/test/``, ...), each
  holding image + XML pairs (same stem, in any sub-folders);
- one folder of image + XML pairs (any sub-folders; split by ``fractions``).

An XML is paired with the image of the same stem in its folder, else with the only
image of that stem anywhere under the folder (VOC's ids), else with its ``<filename>``
(labelling tools often copy a stale ``<filename>``, so it comes last).
``difficult`` and ``truncated`` objects are kept (kdet trains on difficult objects);
their numbers are in the import report. A DTD or entity declaration always stops the
import (hostile XML), as does XML that is not well-formed.

Example:
    >>> from kdet.datasets import voc
    >>> voc.fetch("data/raw/mine", path="~/VOCdevkit/VOC2007").summary()  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

import defusedxml
import defusedxml.ElementTree

from kdet.datasets import folder as fd
from kdet.datasets.records import RecordSet
from kdet.errors import AnnotationError

SPLIT_NAMES = ("train", "val", "valid", "validation", "trainval", "test")
_SPLIT_LISTS = ("train", "val", "test")


@dataclasses.dataclass
class VocAnnotation:
    """The parts of a Pascal VOC file kdet uses.

    Attributes:
        filename: the ``<filename>`` element (``None`` when absent).
        width: ``<size><width>`` (``None`` when absent).
        height: ``<size><height>`` (``None`` when absent).
        names: class name per object.
        boxes: ``[xmin, ymin, xmax, ymax]`` per object, as written.
        difficult: ``<difficult>`` flag per object.
        truncated: ``<truncated>`` flag per object.
    """

    filename: str | None
    width: int | None
    height: int | None
    names: list[str]
    boxes: list[list[float]]
    difficult: list[bool] = dataclasses.field(default_factory=list)
    truncated: list[bool] = dataclasses.field(default_factory=list)


def _number(element, tag: str, path) -> float | None:
    text = element.findtext(tag)
    if text is None or not text.strip():
        return None
    try:
        return float(text)
    except ValueError:
        raise AnnotationError(path, f"<{tag}> is not a number: {text!r}") from None


def _flag(element, tag: str) -> bool:
    return (element.findtext(tag) or "").strip().lower() in ("1", "true", "yes")


def parse_voc(xml_path: str | os.PathLike) -> VocAnnotation:
    """Parse one Pascal VOC annotation file with ``defusedxml``.

    Coordinates may be floats. ``<size>`` may be missing (``None``).

    Raises:
        AnnotationError: the file is missing, not well-formed XML, declares a DTD or
            entities, is not an ``<annotation>``, or an object lacks a name or a
            4-number ``<bndbox>``.

    Example:
        >>> parse_voc("annotations/raccoon-1.xml").boxes  # doctest: +SKIP
        [[81.0, 88.0, 522.0, 408.0]]
    """
    try:
        root = defusedxml.ElementTree.parse(
            xml_path, forbid_dtd=True, forbid_entities=True, forbid_external=True
        ).getroot()
    except FileNotFoundError:
        raise AnnotationError(xml_path, "annotation file is missing") from None
    except defusedxml.DefusedXmlException as err:
        raise AnnotationError(xml_path, f"refused hostile XML ({type(err).__name__})") from None
    except ET.ParseError as err:
        raise AnnotationError(xml_path, f"not well-formed XML ({err})") from None
    if root.tag != "annotation":
        raise AnnotationError(xml_path, f"root element is <{root.tag}>, expected <annotation>")
    width = _number(root, "size/width", xml_path)
    height = _number(root, "size/height", xml_path)
    names, boxes, difficult, truncated = [], [], [], []
    for obj in root.iter("object"):
        name = (obj.findtext("name") or "").strip()
        if not name:
            raise AnnotationError(xml_path, "an <object> has no <name>")
        box = [_number(obj, f"bndbox/{tag}", xml_path) for tag in ("xmin", "ymin", "xmax", "ymax")]
        if any(v is None for v in box):
            raise AnnotationError(xml_path, f"object {name!r} lacks a complete <bndbox>")
        names.append(name)
        boxes.append(box)
        difficult.append(_flag(obj, "difficult"))
        truncated.append(_flag(obj, "truncated"))
    return VocAnnotation(
        root.findtext("filename"),
        int(width) if width is not None else None,
        int(height) if height is not None else None,
        names,
        boxes,
        difficult,
        truncated,
    )


def _devkit_root(path: Path) -> Path | None:
    for candidate in (path, *sorted(path.glob("*")), *sorted(path.glob("*/*"))):
        if (candidate / "Annotations").is_dir():
            return candidate
    return None


def _read_list(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise AnnotationError(path, f"not UTF-8 text ({err})") from None
    return [line.split()[0] for line in lines if line.strip()]


def _pairs(folder: Path, xmls: list[Path], images: list[Path], report) -> list[tuple]:
    """``(xml or None, image or None)`` pairs; unpaired images get ``xml=None``."""
    by_stem: dict[str, list[Path]] = {}
    for image in images:
        by_stem.setdefault(image.stem, []).append(image)
    by_name = {image.name: image for image in images}
    pairs, used = [], set()
    for xml in xmls:
        annotation = parse_voc(xml)
        same = [i for i in by_stem.get(xml.stem, []) if i.parent == xml.parent]
        image = same[0] if same else None
        if image is None and len(by_stem.get(xml.stem, [])) == 1:
            image = by_stem[xml.stem][0]
        if image is None and annotation.filename:
            image = by_name.get(Path(annotation.filename.strip()).name)
        if image is None:
            report.add(
                "skipped",
                "annotation_without_image",
                xml,
                f"no image {annotation.filename or xml.stem + '.*'} found; annotation skipped",
            )
            continue
        used.add(image)
        if annotation.width is None or annotation.height is None:
            report.add("notes", "size_missing", xml, "no <size>; the image's size is used")
        report.count("truncated", sum(annotation.truncated))
        pairs.append((xml, annotation, image))
    for image in images:
        if image not in used:
            report.add(
                "notes",
                "image_without_annotation",
                image,
                "no annotation file; used as an image with no objects",
            )
            pairs.append((None, None, image))
    return pairs


def _sample(xml, annotation, image: Path, root: Path, split) -> fd.Sample:
    relative = image.relative_to(root).as_posix()
    if annotation is None:
        return fd.Sample(image, relative, [], [], split)
    size = None
    if annotation.width is not None or annotation.height is not None:
        size = (annotation.width or 0, annotation.height or 0)
    return fd.Sample(
        image,
        relative,
        annotation.boxes,
        annotation.names,
        split,
        annotation=xml,
        size=size,
        difficult=sum(annotation.difficult),
    )


def read(path: str | os.PathLike, report: fd.ImportReport) -> list[fd.Sample]:
    """The samples of a Pascal VOC dataset folder (layouts in the module docstring).

    Args:
        path: dataset folder.
        report: where missing files, ``<size>`` problems and flags are noted.

    Raises:
        AnnotationError: a malformed or hostile XML, or no XML at all.

    Example:
        >>> samples = read("VOCdevkit/VOC2007", fd.ImportReport("voc", "x"))  # doctest: +SKIP
    """
    path = Path(path)
    devkit = _devkit_root(path)
    samples = []
    if devkit is not None:
        xmls = sorted((devkit / "Annotations").glob("*.xml"))
        images_dir = devkit / "JPEGImages"
        images = fd.list_images(images_dir) if images_dir.is_dir() else []
        pairs = _pairs(devkit, xmls, images, report)
        lists = devkit / "ImageSets" / "Main"
        split_of = {}
        names = [s for s in _SPLIT_LISTS if (lists / f"{s}.txt").is_file()]
        if not {"train", "val"} & set(names) and (lists / "trainval.txt").is_file():
            names.insert(0, "trainval")
        for split in names:
            for image_id in _read_list(lists / f"{split}.txt"):
                split_of.setdefault(image_id, split)
        for xml, annotation, image in pairs:
            split = split_of.get(image.stem)
            samples.append(_sample(xml, annotation, image, devkit, split))
    else:
        split_dirs = [
            d for d in sorted(path.iterdir()) if d.is_dir() and d.name.lower() in SPLIT_NAMES
        ]
        folders = [(d, d.name) for d in split_dirs] if split_dirs else [(path, None)]
        for folder, split in folders:
            xmls = sorted(p for p in folder.rglob("*.xml") if not fd._hidden(p, folder))
            images = fd.list_images(folder)
            for xml, annotation, image in _pairs(folder, xmls, images, report):
                samples.append(_sample(xml, annotation, image, path, split))
    if not any(s.annotation for s in samples):
        raise AnnotationError(path, "no Pascal VOC annotation (*.xml) found")
    return samples


def fetch(
    out_dir: str | os.PathLike,
    *,
    path: str | os.PathLike,
    fractions: dict[str, float] | None = None,
    seed: int = 0,
    classes: Sequence[str] | None = None,
    on_invalid: str = "skip",
    name: str | None = None,
    mirror: str | None = None,
    progress: bool = True,
) -> RecordSet:
    """Import a Pascal VOC dataset into ``out_dir`` (``images/``, ``records.json``).

    Args:
        out_dir: dataset folder to write.
        path: the VOC folder, or an ``https://`` URL of a zip/tar archive of it
            (downloaded through ``KDET_MIRROR`` and extracted into ``out_dir/downloads/``).
        fractions: split used when the data has no splits of its own (default
            ``{"train": 0.8, "test": 0.2}``).
        seed: seed of that split.
        classes: class order, and a filter: objects of other classes are dropped.
            Default: every class name found, sorted.
        on_invalid: ``"skip"`` or ``"raise"`` for a corrupt image or an unusable box.
        name: dataset name (default: the folder's name).
        mirror: mirror folder or base URL (default: ``KDET_MIRROR``).
        progress: show progress bars.

    Returns:
        The saved :class:`RecordSet`; ``import_report.json`` is written next to it.

    Example:
        >>> fetch("data/raw/pets", path="data/pets_voc", classes=["cat", "dog"])
        ... # doctest: +SKIP
    """
    source = fd.resolve_source(path, out_dir, mirror=mirror, progress=progress)
    report = fd.ImportReport("voc", path)
    samples = read(source, report)
    return fd.import_samples(
        samples,
        out_dir,
        name=name or source.name,
        report=report,
        classes=classes,
        fractions=fractions,
        seed=seed,
        on_invalid=on_invalid,
        progress=progress,
    )
