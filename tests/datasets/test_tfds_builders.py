import json
import os
import subprocess
import sys

import numpy as np
import pytest

from kdet.data import build_pipeline, from_tfds
from kdet.datasets.records import Record, RecordSet
from kdet.datasets.tfds_builders import prepare
from kdet.errors import ImageError
from tests.data.conftest import IMAGES, write_image

# Runs in a fresh interpreter that never imports kdet: TFDS must rebuild the dataset
# from its own files. Prints each example's filename, labels and absolute xyxy boxes.
LOAD_WITHOUT_KDET = """
import json, sys
import tensorflow_datasets as tfds
assert "kdet" not in sys.modules
out = {}
for split in ("train", "test"):
    for ex in tfds.as_numpy(tfds.load("kdet_shapes", split=split, data_dir=sys.argv[1])):
        height, width = ex["image"].shape[:2]
        ymin, xmin, ymax, xmax = ex["objects"]["bbox"].T
        boxes = [xmin * width, ymin * height, xmax * width, ymax * height]
        out[ex["image/filename"].decode()] = {
            "split": split, "shape": list(ex["image"].shape),
            "labels": ex["objects"]["label"].tolist(),
            "boxes": [list(map(float, b)) for b in zip(*boxes)],
        }
print(json.dumps(out))
"""


@pytest.fixture
def records_dir(tmp_path):
    folder = tmp_path / "shapes"
    folder.mkdir()
    records = []
    for i, (name, mode, fmt, (width, height)) in enumerate(IMAGES):
        write_image(folder / name, mode, fmt, (width, height), seed=i)
        boxes = [[1.5, 2.0, width - 3.25, height / 2], [0.0, 0.0, width, height]][: 1 + i % 2]
        split = "test" if i == 1 else "train"
        records.append(Record(name, width, height, boxes, list(range(len(boxes))), split))
    RecordSet("shapes", ["rectangle", "ellipse"], records, folder).save()
    return folder


def test_prepared_dataset_loads_without_kdet(records_dir, tmp_path):
    data_dir = tmp_path / "tfds"
    builder = prepare("shapes", records_dir, data_dir)
    assert builder.info.splits["train"].num_examples == 3
    assert builder.info.features["objects"]["label"].names == ["rectangle", "ellipse"]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    result = subprocess.run(
        [sys.executable, "-c", LOAD_WITHOUT_KDET, str(data_dir)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    records = RecordSet.load(records_dir)
    assert sorted(loaded) == sorted(r.image for r in records.records)
    for record in records.records:
        example = loaded[record.image]
        assert example["split"] == record.split
        assert example["shape"] == [record.height, record.width, 3]
        assert example["labels"] == record.classes
        np.testing.assert_allclose(example["boxes"], record.boxes, atol=1e-3)


def test_from_tfds_feeds_the_pipeline(records_dir, tmp_path):
    data_dir = tmp_path / "tfds"
    prepare("shapes", records_dir, data_dir)
    examples = list(from_tfds("kdet_shapes", "train", data_dir).as_numpy_iterator())
    by_name = {r.image: r for r in RecordSet.load(records_dir).records}
    for example in examples:
        record = by_name[example["filename"].decode()]
        assert example["image"].shape == (record.height, record.width, 3)
        np.testing.assert_allclose(example["boxes"], record.boxes, atol=1e-3)
    batch = next(
        iter(
            build_pipeline(
                from_tfds("kdet_shapes", "train", data_dir), image_size=(32, 32), batch_size=3
            )
        )
    )
    assert tuple(batch["images"].shape) == (3, 32, 32, 3)
    assert tuple(batch["bounding_boxes"]["boxes"].shape) == (3, 2, 4)


def test_prepare_names_a_bad_image(records_dir, tmp_path):
    (records_dir / "alpha.png").write_bytes(b"GIF89a truncated")
    with pytest.raises(ImageError, match="alpha.png: cannot decode image"):
        prepare("shapes", records_dir, tmp_path / "tfds")


def test_prepare_rejects_unknown_name(records_dir, tmp_path):
    with pytest.raises(ValueError, match="name must be one of"):
        prepare("coco", records_dir, tmp_path / "tfds")
