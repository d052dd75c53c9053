"""Small, trainable datasets in VOC, COCO and YOLO form, with the messy cases mixed in.

Each ``make_*`` writes 64x64 JPEGs of 1-2 objects of two classes (red rectangles,
blue ellipses on a grey background, sides >= 14 px): 24 train + 8 test images (YOLO:
24 train + 4 val + 8 test), then adds the messy files the readers must handle, named
``m_*`` so that they sort after the clean ones. Everything is seeded: the same call
writes the same bytes.

Example:
    >>> from tests.datasets.messy import make_yolo
    >>> from kdet.datasets import fetch
    >>> records = fetch("yolo", tmp_path / "out", path=make_yolo(tmp_path))  # doctest: +SKIP
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SIZE = 64
CLASSES = ("rectangle", "ellipse")
COLOURS = {"rectangle": (220, 30, 30), "ellipse": (30, 60, 220), "triangle": (30, 190, 40)}
NUM_TRAIN, NUM_TEST = 24, 8


def scene(seed: int, classes=CLASSES, count: int | None = None):
    """A 64x64 RGB image and its objects ``[(class_name, [x1, y1, x2, y2]), ...]``."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(-8, 9, size=(SIZE, SIZE, 3))
    pixels = np.clip(128 + noise, 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels, "RGB")
    draw = ImageDraw.Draw(image)
    objects = []
    count = count if count is not None else int(rng.integers(1, 3))
    # Two objects go to the left and right halves so they never overlap.
    lanes = [(0, SIZE)] if count == 1 else [(0, SIZE // 2), (SIZE // 2, SIZE)]
    for k in range(count):
        name = classes[int(rng.integers(0, len(classes)))] if k == 0 or count == 1 else None
        name = name or classes[(classes.index(objects[0][0]) + 1) % len(classes)]
        low, high = lanes[k]
        w = int(rng.integers(14, min(28, high - low - 2) + 1))
        h = int(rng.integers(14, 40))
        x1 = int(rng.integers(low + 1, high - w))
        y1 = int(rng.integers(1, SIZE - h - 1))
        box = [x1, y1, x1 + w, y1 + h]
        if name == "rectangle":
            draw.rectangle([x1, y1, x1 + w - 1, y1 + h - 1], fill=COLOURS[name])
        elif name == "ellipse":
            draw.ellipse([x1, y1, x1 + w - 1, y1 + h - 1], fill=COLOURS[name])
        else:
            draw.polygon(
                [(x1, y1 + h - 1), (x1 + w - 1, y1 + h - 1), (x1 + w // 2, y1)], fill=COLOURS[name]
            )
        objects.append((name, box))
    return image, objects


def encode(image: Image.Image, fmt: str = "JPEG") -> bytes:
    """The bytes of ``image`` saved as ``fmt``."""
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def corrupt_jpeg(seed: int = 99) -> bytes:
    """A JPEG cut in half: Pillow reads its header but cannot decode it."""
    data = encode(scene(seed)[0])
    return data[: len(data) // 2]


def odd_modes(seed: int) -> dict[str, tuple[bytes, list]]:
    """Images in RGBA, palette, grayscale and 16-bit grayscale, each with its objects."""
    image, objects = scene(seed, count=1)
    rgba = image.convert("RGBA")
    rgba.putalpha(200)
    gray16 = Image.fromarray(np.asarray(image.convert("L"), np.uint16) * 257)
    return {
        "m_rgba.png": (encode(rgba, "PNG"), objects),
        "m_palette.png": (encode(image.convert("P", palette=Image.ADAPTIVE), "PNG"), objects),
        "m_gray.jpg": (encode(image.convert("L")), objects),
        "m_gray16.png": (encode(gray16, "PNG"), objects),
    }


def _clean(split_sizes: dict[str, int]):
    seed = 0
    for split, number in split_sizes.items():
        for _i in range(number):
            image, objects = scene(seed)
            yield split, f"img_{seed:03d}", image, objects
            seed += 1


# ----------------------------------------------------------------------------- VOC


def voc_xml(filename, size, objects, flags=None) -> str:
    """A Pascal VOC document. ``size``: ``(w, h)`` or ``None``; ``flags``: per object."""
    size_xml = (
        f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>"
        if size is not None
        else ""
    )
    parts = []
    for k, (name, box) in enumerate(objects):
        flag = (flags or {}).get(k, {})
        parts.append(
            f"<object><name>{name}</name><pose>Unspecified</pose>"
            f"<truncated>{int(flag.get('truncated', 0))}</truncated>"
            f"<difficult>{int(flag.get('difficult', 0))}</difficult><bndbox>"
            f"<xmin>{box[0]}</xmin><ymin>{box[1]}</ymin><xmax>{box[2]}</xmax><ymax>{box[3]}</ymax>"
            "</bndbox></object>"
        )
    return (
        f"<annotation>\n  <folder>JPEGImages</folder>\n  <filename>{filename}</filename>\n"
        f"  {size_xml}\n  {''.join(parts)}\n</annotation>\n"
    )


def make_voc(tmp) -> Path:
    """A VOC devkit folder (``JPEGImages``, ``Annotations``, ``ImageSets/Main``).

    Messy files (all in the train list unless said):

    - ``m_size0``: ``<size>`` 0x0; ``m_nosize``: no ``<size>`` (image size used);
    - ``m_png_as_jpg.jpg`` / ``m_webp_as_jpg.jpg``: PNG / WebP bytes (used, noted);
    - ``m_rgba.png``, ``m_palette.png``, ``m_gray.jpg``, ``m_gray16.png``: used;
    - ``m_flags``: one ``difficult`` + one ``truncated`` object (kept, counted);
    - ``m_edge``: a box over the right edge (clipped); ``m_inverted``: xmin > xmax
      (swapped); ``m_zero``: a zero-width box (image skipped);
    - ``m_float``: float coordinates; ``m_empty``: an XML without objects;
    - ``m_orphan.xml``: no image (skipped); ``m_noxml.jpg``: no XML (no objects);
    - ``m_case``: class ``Rectangle`` (merged into ``rectangle``);
    - ``m_corrupt.jpg``: truncated JPEG (skipped);
    - ``m_triangle`` (test list): a ``triangle``, a class absent from train (warned).

    Returns:
        The devkit folder.
    """
    root = Path(tmp) / "voc"
    images, annotations, lists = root / "JPEGImages", root / "Annotations", root / "ImageSets/Main"
    for folder in (images, annotations, lists):
        folder.mkdir(parents=True, exist_ok=True)
    split_ids = {"train": [], "test": []}

    def add(stem, data, xml, split="train", suffix=".jpg"):
        if data is not None:
            (images / f"{stem}{suffix}").write_bytes(data)
        if xml is not None:
            (annotations / f"{stem}.xml").write_text(xml)
        split_ids[split].append(stem)

    for split, stem, image, objects in _clean({"train": NUM_TRAIN, "test": NUM_TEST}):
        add(stem, encode(image), voc_xml(f"{stem}.jpg", (SIZE, SIZE), objects), split)

    image, objects = scene(100)
    add("m_size0", encode(image), voc_xml("m_size0.jpg", (0, 0), objects))
    image, objects = scene(101)
    add("m_nosize", encode(image), voc_xml("m_nosize.jpg", None, objects))
    image, objects = scene(102)
    add("m_png_as_jpg", encode(image, "PNG"), voc_xml("m_png_as_jpg.jpg", (64, 64), objects))
    image, objects = scene(103)
    add("m_webp_as_jpg", encode(image, "WEBP"), voc_xml("m_webp_as_jpg.jpg", (64, 64), objects))
    for name, (data, objects) in odd_modes(104).items():
        stem, suffix = name.rsplit(".", 1)
        add(stem, data, voc_xml(name, (64, 64), objects), suffix=f".{suffix}")
    image, objects = scene(105, count=2)
    flags = {0: {"difficult": 1}, 1: {"truncated": 1}}
    add("m_flags", encode(image), voc_xml("m_flags.jpg", (64, 64), objects, flags))
    image, objects = scene(106, count=1)
    name, box = objects[0]
    add(
        "m_edge",
        encode(image),
        voc_xml("m_edge.jpg", (64, 64), [(name, [box[0], box[1], 70, box[3]])]),
    )
    image, objects = scene(107, count=1)
    name, (x1, y1, x2, y2) = objects[0]
    add(
        "m_inverted", encode(image), voc_xml("m_inverted.jpg", (64, 64), [(name, [x2, y1, x1, y2])])
    )
    image, objects = scene(108, count=1)
    name, (x1, y1, x2, y2) = objects[0]
    add("m_zero", encode(image), voc_xml("m_zero.jpg", (64, 64), [(name, [x1, y1, x1, y2])]))
    image, objects = scene(109, count=1)
    name, box = objects[0]
    add(
        "m_float", encode(image), voc_xml("m_float.jpg", (64, 64), [(name, [b + 0.5 for b in box])])
    )
    image, _ = scene(110, count=0)
    add("m_empty", encode(image), voc_xml("m_empty.jpg", (64, 64), []))
    add("m_orphan", None, voc_xml("m_orphan.jpg", (64, 64), [("rectangle", [1, 1, 20, 20])]))
    add("m_noxml", encode(scene(111, count=0)[0]), None)
    image, objects = scene(112, classes=("rectangle",), count=1)
    add("m_case", encode(image), voc_xml("m_case.jpg", (64, 64), [("Rectangle", objects[0][1])]))
    add(
        "m_corrupt",
        corrupt_jpeg(),
        voc_xml("m_corrupt.jpg", (64, 64), [("ellipse", [1, 1, 30, 30])]),
    )
    image, objects = scene(113, classes=("triangle",), count=1)
    add("m_triangle", encode(image), voc_xml("m_triangle.jpg", (64, 64), objects), split="test")

    for split, ids in split_ids.items():
        (lists / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    return root


# ----------------------------------------------------------------------------- COCO


def make_coco(tmp) -> Path:
    """A COCO folder: ``annotations/instances_{train,test}.json`` + ``train/``, ``test/``.

    Categories ``{1: rectangle, 2: ellipse, 7: " Rectangle"}`` (id 7 is merged into
    ``rectangle``). Messy entries (train): ``m_crowd`` (an ``iscrowd`` object, dropped),
    ``m_empty`` (listed, no annotations), ``m_missing`` (file absent, skipped), an
    annotation of an unlisted ``image_id`` (skipped), ``m_negative`` (negative width,
    swapped), ``m_edge`` (over the edge, clipped), ``m_zero`` (zero height, image
    skipped), ``m_size`` (declares 32x32, is 64x64), ``m_corrupt`` (truncated JPEG,
    skipped), ``m_case`` (category 7), ``m_rgba.png`` (used).

    Returns:
        The dataset folder (holding ``annotations/``).
    """
    root = Path(tmp) / "coco"
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    categories = [
        {"id": 1, "name": "rectangle", "supercategory": "shape"},
        {"id": 2, "name": "ellipse", "supercategory": "shape"},
        {"id": 7, "name": " Rectangle", "supercategory": "shape"},
    ]
    cat_id = {"rectangle": 1, "ellipse": 2}
    data = {
        s: {"images": [], "annotations": [], "categories": categories} for s in ("train", "test")
    }
    counter = {"image": 0, "annotation": 0}

    def add(split, file_name, payload, objects, size=(SIZE, SIZE), **extra):
        counter["image"] += 1
        image_id = counter["image"]
        if payload is not None:
            (root / split).mkdir(exist_ok=True)
            (root / split / file_name).write_bytes(payload)
        data[split]["images"].append(
            {"id": image_id, "file_name": file_name, "width": size[0], "height": size[1]}
        )
        for name, box in objects:
            counter["annotation"] += 1
            x1, y1, x2, y2 = box
            category = cat_id.get(name, name)
            data[split]["annotations"].append(
                {
                    "id": counter["annotation"],
                    "image_id": image_id,
                    "category_id": category,
                    "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)],
                    "area": float((x2 - x1) * (y2 - y1)),
                    "iscrowd": 0,
                    **extra,
                }
            )
        return image_id

    for split, stem, image, objects in _clean({"train": NUM_TRAIN, "test": NUM_TEST}):
        add(split, f"{stem}.jpg", encode(image), objects)

    image, objects = scene(200, count=1)
    crowd_id = add("train", "m_crowd.jpg", encode(image), objects)
    counter["annotation"] += 1
    data["train"]["annotations"].append(
        {
            "id": counter["annotation"],
            "image_id": crowd_id,
            "category_id": 2,
            "bbox": [0.0, 0.0, 20.0, 20.0],
            "area": 400.0,
            "iscrowd": 1,
        }
    )
    add("train", "m_empty.jpg", encode(scene(201, count=0)[0]), [])
    add("train", "m_missing.jpg", None, [("rectangle", [1, 1, 20, 20])])
    counter["annotation"] += 1
    data["train"]["annotations"].append(
        {
            "id": counter["annotation"],
            "image_id": 999,
            "category_id": 1,
            "bbox": [1.0, 1.0, 20.0, 20.0],
            "area": 400.0,
            "iscrowd": 0,
        }
    )
    image, objects = scene(202, count=1)
    image_id = add("train", "m_negative.jpg", encode(image), objects)
    bbox = data["train"]["annotations"][-1]["bbox"]
    bbox[0], bbox[2] = bbox[0] + bbox[2], -bbox[2]
    image, objects = scene(203, count=1)
    name, box = objects[0]
    add("train", "m_edge.jpg", encode(image), [(name, [box[0], box[1], box[2], 75])])
    image, objects = scene(204, count=1)
    name, box = objects[0]
    add("train", "m_zero.jpg", encode(image), [(name, [box[0], box[1], box[2], box[1]])])
    image, objects = scene(205, count=1)
    add("train", "m_size.jpg", encode(image), objects, size=(32, 32))
    add("train", "m_corrupt.jpg", corrupt_jpeg(), [("ellipse", [1, 1, 30, 30])])
    image, objects = scene(206, classes=("rectangle",), count=1)
    add("train", "m_case.jpg", encode(image), [(7, objects[0][1])])
    data_rgba, objects = odd_modes(207)["m_rgba.png"]
    add("train", "m_rgba.png", data_rgba, objects)
    del image_id

    for split, content in data.items():
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(content))
    return root


# ----------------------------------------------------------------------------- YOLO


def yolo_line(class_id: int, box, size=SIZE) -> str:
    """``class cx cy w h`` (normalised) of an absolute ``xyxy`` box."""
    x1, y1, x2, y2 = box
    cx, cy, w, h = (x1 + x2) / 2 / size, (y1 + y2) / 2 / size, (x2 - x1) / size, (y2 - y1) / size
    return f"{class_id} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}"


def make_yolo(tmp) -> Path:
    """An Ultralytics folder: ``data.yaml`` + ``images/{train,val,test}`` + ``labels/...``.

    ``names`` is a ``{0: rectangle, 1: ellipse}`` dict. Messy files (train):
    ``m_polygon`` (a segmentation line: its bounding box is used), ``m_fields`` (a
    6-field line on line 2: image skipped), ``m_class`` (class id 5: skipped),
    ``m_nolabel.jpg`` (no label file: no objects), ``labels/train/m_orphan.txt`` (no
    image: skipped), ``m_edge`` (``w`` reaching past the image: clipped), ``m_empty``
    (empty label file), ``m_corrupt.jpg`` (truncated: skipped), ``m_gray.jpg`` and
    ``m_rgba.png`` (used).

    Returns:
        The folder holding ``data.yaml``.
    """
    root = Path(tmp) / "yolo"
    sizes = {"train": NUM_TRAIN, "val": 4, "test": NUM_TEST}
    for split in sizes:
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
    (root / "data.yaml").write_text(
        "# kdet messy YOLO test set\npath: .\ntrain: images/train\nval: images/val\n"
        "test: images/test\nnames:\n  0: rectangle\n  1: ellipse\n"
    )

    def add(split, name, payload, lines):
        if payload is not None:
            (root / "images" / split / name).write_bytes(payload)
        if lines is not None:
            label = root / "labels" / split / f"{name.rsplit('.', 1)[0]}.txt"
            label.write_text("".join(f"{line}\n" for line in lines))

    for split, stem, image, objects in _clean(sizes):
        add(
            split,
            f"{stem}.jpg",
            encode(image),
            [yolo_line(CLASSES.index(n), b) for n, b in objects],
        )

    image, objects = scene(300, count=1)
    name, (x1, y1, x2, y2) = objects[0]
    polygon = [x1, y1, x2, y1, x2, y2, x1, y2]
    line = f"{CLASSES.index(name)} " + " ".join(f"{v / SIZE:.6f}" for v in polygon)
    add("train", "m_polygon.jpg", encode(image), [line])
    image, objects = scene(301, count=1)
    add(
        "train",
        "m_fields.jpg",
        encode(image),
        [yolo_line(0, objects[0][1]), "0 0.5 0.5 0.2 0.2 0.9"],
    )
    image, objects = scene(302, count=1)
    add("train", "m_class.jpg", encode(image), [yolo_line(5, objects[0][1])])
    add("train", "m_nolabel.jpg", encode(scene(303, count=0)[0]), None)
    add("train", "m_orphan.jpg", None, [yolo_line(0, [1, 1, 20, 20])])
    image, objects = scene(304, count=1)
    name, box = objects[0]
    add(
        "train",
        "m_edge.jpg",
        encode(image),
        [yolo_line(CLASSES.index(name), [box[0], box[1], 72, box[3]])],
    )
    add("train", "m_empty.jpg", encode(scene(305, count=0)[0]), [])
    add("train", "m_corrupt.jpg", corrupt_jpeg(), [yolo_line(1, [1, 1, 30, 30])])
    for name in ("m_gray.jpg", "m_rgba.png"):
        payload, objects = odd_modes(306)[name]
        add("train", name, payload, [yolo_line(CLASSES.index(n), b) for n, b in objects])
    return root
