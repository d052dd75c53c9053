"""Pretrained detectors: a small registry of library presets kdet runs and fine-tunes.

Each entry names a KerasHub or KerasCV preset, the kdet family that runs it, where it
comes from, its class names by class id (the presets carry none) and its input size.
:func:`load` reads a local copy first, else asks the library for the preset (a download
from Kaggle: internet needed). A local copy is a folder the library's own
``save_to_preset`` wrote (:func:`download` writes one): ``$KDET_ZOO/NAME/`` (as
``KDET_MIRROR`` does for datasets), or a folder path whose last part is the entry's name.
``kdet predict zoo:NAME`` and ``kdet train FAMILY --init zoo:NAME`` go through here.

Example:
    >>> [entry.name for entry in ENTRIES]
    ['retinanet_resnet50_fpn_coco', 'retinanet_resnet50_fpn_v2_coco', 'yolo_v8_m_pascalvoc']
    >>> len(get("yolo_v8_m_pascalvoc").classes)
    20
    >>> model = load("yolo_v8_m_pascalvoc")  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from pathlib import Path

from kdet.errors import KdetError

ENV = "KDET_ZOO"
#: The prefix that names a zoo entry where a model path or weights are expected.
PREFIX = "zoo:"
#: Class ids no class uses (COCO's background and its ten unused category ids).
UNUSED = ("__background__", "N/A")

# COCO category names by category id (torchvision's list, which KerasHub's RetinaNet
# presets were converted from: 91 class ids, 80 of them used).
COCO_CATEGORIES = (
    "__background__", "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train",
    "truck", "boat", "traffic light", "fire hydrant", "N/A", "stop sign", "parking meter",
    "bench", "bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra",
    "giraffe", "N/A", "backpack", "umbrella", "N/A", "N/A", "handbag", "tie", "suitcase",
    "frisbee", "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove",
    "skateboard", "surfboard", "tennis racket", "bottle", "N/A", "wine glass", "cup", "fork",
    "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange", "broccoli", "carrot",
    "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant", "bed", "N/A",
    "dining table", "N/A", "N/A", "toilet", "N/A", "tv", "laptop", "mouse", "remote",
    "keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "N/A",
    "book", "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip
# Pascal VOC's 20 classes in their usual (alphabetical) order, ids 0..19.
VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class ZooEntry:
    """One pretrained detector.

    Attributes:
        name: the zoo name (the library's preset name).
        family: the kdet family that runs and fine-tunes it.
        preset: what the library's ``from_preset`` takes.
        source: where the library downloads it from.
        class_names: names by class id, unused ids included (:data:`UNUSED`).
        image_size: ``(height, width)`` images are fitted into.
    """

    name: str
    family: str
    preset: str
    source: str
    class_names: tuple[str, ...]
    image_size: tuple[int, int]

    @property
    def classes(self) -> list[str]:
        """The names of the classes it detects (unused ids left out)."""
        return [name for name in self.class_names if name not in UNUSED]

    def summary(self) -> dict:
        """What ``kdet zoo list`` shows."""
        return {
            "name": self.name,
            "family": self.family,
            "classes": len(self.classes),
            "source": self.source,
            "image_size": list(self.image_size),
        }


KAGGLE = "https://www.kaggle.com/models/keras"
ENTRIES = (
    ZooEntry(
        "retinanet_resnet50_fpn_coco",
        "retinanet",
        "retinanet_resnet50_fpn_coco",
        f"{KAGGLE}/retinanet/keras/retinanet_resnet50_fpn_coco/4",
        COCO_CATEGORIES,
        (800, 800),
    ),
    ZooEntry(
        "retinanet_resnet50_fpn_v2_coco",
        "retinanet",
        "retinanet_resnet50_fpn_v2_coco",
        f"{KAGGLE}/retinanet/keras/retinanet_resnet50_fpn_v2_coco/3",
        COCO_CATEGORIES,
        (800, 800),
    ),
    ZooEntry(
        "yolo_v8_m_pascalvoc",
        "yolov8",
        "yolo_v8_m_pascalvoc",
        f"{KAGGLE}/yolov8/keras/yolo_v8_m_pascalvoc/2",
        VOC_CLASSES,
        (640, 640),
    ),
)
ZOO = {entry.name: entry for entry in ENTRIES}


def get(name: str) -> ZooEntry:
    """The entry called ``name`` (a ``zoo:`` prefix is dropped); ``ValueError`` listing
    the entries otherwise."""
    name = name.removeprefix(PREFIX)
    if name not in ZOO:
        raise ValueError(f"unknown zoo model {name!r}; available: {', '.join(ZOO)}")
    return ZOO[name]


def resolve(name: str) -> tuple[ZooEntry, Path | None]:
    """``(entry, local preset folder or None)`` for a zoo name or a folder path.

    Example:
        >>> resolve("zoo:yolo_v8_m_pascalvoc")[0].family
        'yolov8'
    """
    name = name.removeprefix(PREFIX)
    path = Path(name).expanduser()
    if name not in ZOO:
        if not path.is_dir():
            get(name)  # raises, listing the entries
        if path.name not in ZOO:
            raise ValueError(
                f"{path}: name a local preset folder after its zoo entry "
                f"({', '.join(ZOO)}), so that kdet knows its classes"
            )
        if not (path / "config.json").is_file():
            raise KdetError(path, "not a preset folder (no config.json): see kdet zoo download")
        return ZOO[path.name], path
    folder = Path(os.environ[ENV]).expanduser() / name if os.environ.get(ENV) else None
    return ZOO[name], folder if folder and (folder / "config.json").is_file() else None


def family_module(family: str):
    """The module that loads, saves and runs ``family``'s presets
    (:attr:`kdet.families.Family.presets_module`; imported when used, so keras-cv stays
    in the YOLOv8 family's)."""
    from kdet.families import get_family

    return importlib.import_module(get_family(family).presets_module)


def load(name: str):
    """The Keras detector of a zoo entry: from its local copy, else from the library.

    Args:
        name: a zoo name (``zoo:`` prefix optional) or a local preset folder path.

    Raises:
        ValueError: an unknown name.
        KdetError: the preset could not be loaded (offline): names the preset, where it
            comes from and how to use a local copy.
    """
    entry, folder = resolve(name)
    module = family_module(entry.family)
    if folder is not None:
        return module.load_preset(str(folder))
    try:
        return module.load_preset(entry.preset)
    except Exception as error:  # kagglehub / requests raise many types when offline
        searched = (
            f"no {Path(os.environ[ENV]) / entry.name}/config.json"
            if os.environ.get(ENV)
            else f"{ENV} is not set"
        )
        raise KdetError(
            f"zoo preset {entry.preset!r} from {entry.source}",
            f"could not load it ({type(error).__name__}: {error}); {searched}. Offline, use "
            f"a local copy: on a machine with internet run `kdet zoo download {entry.name} "
            f"--out DIR`, copy DIR here and set {ENV}=DIR (it holds {entry.name}/config.json, "
            "written by the library's save_to_preset), or pass the folder DIR/"
            f"{entry.name} itself.",
        ) from error


def download(name: str, out_dir: str | os.PathLike) -> Path:
    """Load a zoo entry and save it as ``out_dir/NAME``, a folder for ``$KDET_ZOO``.

    Example:
        >>> download("yolo_v8_m_pascalvoc", "zoo")  # doctest: +SKIP
        PosixPath('zoo/yolo_v8_m_pascalvoc')
    """
    entry = get(name)
    folder = Path(out_dir) / entry.name
    family_module(entry.family).save_preset(load(entry.name), str(folder))
    return folder


def class_ids(entry: ZooEntry, classes: list[str]) -> list[int]:
    """The class ids of the names ``classes``; ``ValueError`` listing the valid names.

    Example:
        >>> class_ids(get("yolo_v8_m_pascalvoc"), ["cat", "dog"])
        [7, 11]
    """
    unknown = [name for name in classes if name not in entry.classes]
    if unknown:
        raise ValueError(
            f"zoo:{entry.name} has no class {', '.join(map(repr, unknown))}; its classes: "
            + ", ".join(entry.classes)
        )
    return [i for i, name in enumerate(entry.class_names) if name in classes]
