"""The zoo of pretrained detectors, offline: tiny random models saved with the libraries'
own preset savers stand in for the real presets under ``$KDET_ZOO``; every remote download
is refused, so no test can reach out."""

import json

import cv2
import keras_cv
import keras_hub
import numpy as np
import pytest

from kdet import cli, zoo
from kdet.models.retinanet import build_retinanet
from kdet.models.yolov8 import build_yolov8
from kdet.predict import ZooDetector
from tests.runner_helpers import make_shapes

RETINANET = "retinanet_resnet50_fpn_coco"
YOLO = "yolo_v8_m_pascalvoc"
PERSON, CAT = zoo.COCO_CATEGORIES.index("person"), zoo.VOC_CLASSES.index("cat")


@pytest.fixture(autouse=True)
def no_downloads(monkeypatch):
    """Refuse every Kaggle download, and record the presets asked of the libraries."""
    asked = []

    def refuse(handle, *args, **kwargs):
        raise ConnectionError(f"test: no network for {handle}")

    monkeypatch.setattr("kagglehub.model_download", refuse)
    for cls in (keras_hub.models.RetinaNetObjectDetector, keras_cv.models.YOLOV8Detector):
        local = cls.from_preset

        def from_preset(preset, *args, _local=local, **kwargs):
            asked.append(preset)
            if not (isinstance(preset, str) and preset.startswith("/")):
                refuse(preset)
            return _local(preset, *args, **kwargs)

        monkeypatch.setattr(cls, "from_preset", from_preset)
    return asked


def favour(layer, num_classes: int, class_id: int) -> None:
    """Make a class head's output layer score ``class_id`` high and the others low."""
    bias = np.full(layer.bias.shape, -8.0, "float32")
    bias[class_id::num_classes] = 4.0
    layer.bias.assign(bias)


@pytest.fixture(scope="module")
def zoo_dir(tmp_path_factory):
    """``NAME/`` preset folders of tiny random models whose class heads favour one class."""
    root = tmp_path_factory.mktemp("zoo")
    retinanet = build_retinanet(
        num_classes=len(zoo.COCO_CATEGORIES), image_size=64, bounding_box_format="yxyx"
    )
    favour(retinanet.classification_head.prediction_layer, len(zoo.COCO_CATEGORIES), PERSON)
    retinanet.save_to_preset(str(root / RETINANET))  # KerasHub's own saver
    yolo = build_yolov8(num_classes=20, image_size=64, backbone_size="xs")
    for level in (1, 2, 3):
        favour(yolo.get_layer(f"yolo_v8_head_{level}_class_3_conv"), 20, CAT)
    zoo.family_module("yolov8").save_preset(yolo, str(root / YOLO))  # KerasCV's saver
    return root


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "photo.png"
    cv2.imwrite(str(path), np.random.default_rng(0).integers(0, 255, (48, 64, 3), np.uint8))
    return path


def run_cli(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_zoo_list(capsys):
    code, out, _ = run_cli(capsys, "zoo", "list", "--json")
    entries = {e["name"]: e for e in json.loads(out)["zoo"]}
    assert code == 0 and set(entries) == set(zoo.ZOO)
    assert entries[RETINANET]["classes"] == 80 and entries[YOLO]["classes"] == 20
    assert entries[YOLO]["family"] == "yolov8" and "kaggle.com" in entries[YOLO]["source"]
    code, out, _ = run_cli(capsys, "zoo", "list")
    assert code == 0 and all(name in out for name in zoo.ZOO)


def test_predict_zoo_keeps_the_asked_classes_with_the_entrys_names(
    zoo_dir, image, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("KDET_ZOO", str(zoo_dir))

    def detections(*classes):
        out = tmp_path / "-".join(classes or ["all"])
        args = ["predict", f"zoo:{RETINANET}", image, "--out", out, "--quiet"]
        code, _, err = run_cli(capsys, *args, *(["--classes", ",".join(classes)] * bool(classes)))
        assert code == 0, err
        assert (out / "photo.jpg").is_file()
        return json.loads((out / "detections.json").read_text())[0]["detections"]

    everything = detections()
    assert everything and {(d["class_id"], d["class_name"]) for d in everything} == {
        (PERSON, "person")
    }
    assert all(0 <= d["box"][0] <= d["box"][2] <= 64 for d in everything)
    assert detections("person", "apple") == everything
    assert detections("car") == []


def test_zoo_detector_from_a_folder_path(zoo_dir):
    detector = ZooDetector(f"zoo:{zoo_dir / YOLO}", classes=["cat"])
    out = detector(np.zeros((64, 96, 3), np.uint8), score_threshold=0.5)
    assert len(out["boxes"]) and set(out["class_names"]) == {"cat"}
    with pytest.raises(ValueError, match="name a local preset folder after its zoo entry"):
        zoo.resolve(str(zoo_dir))


def test_unknown_class_lists_the_valid_ones(image, capsys):
    code, _, err = run_cli(capsys, "predict", f"zoo:{YOLO}", image, "--classes", "cat,apple")
    assert code == 1
    assert "has no class 'apple'" in err and "aeroplane, bicycle, bird" in err


@pytest.mark.parametrize("name", ["retinanet_resnet50_fpn_v2_coco", YOLO])
def test_missing_preset_offline_says_how_to_use_a_local_copy(
    name, image, tmp_path, capsys, monkeypatch, no_downloads
):
    monkeypatch.setenv("KDET_ZOO", str(tmp_path / "empty"))
    code, _, err = run_cli(capsys, "predict", f"zoo:{name}", image, "--out", tmp_path / "o")
    entry = zoo.get(name)
    assert code == 1 and no_downloads == [entry.preset]
    assert f"zoo preset {name!r} from {entry.source}" in err
    assert f"kdet zoo download {name} --out DIR" in err and "KDET_ZOO=DIR" in err
    assert f"{name}/config.json" in err


def test_fine_tuning_starts_from_the_zoo_weights(zoo_dir, monkeypatch):
    monkeypatch.setenv("KDET_ZOO", str(zoo_dir))
    source = zoo.load(YOLO)
    new = build_yolov8(num_classes=3, image_size=64, backbone_size="m", weights=f"zoo:{YOLO}")
    assert len(new.backbone.weights) == len(source.backbone.weights)  # xs, as the zoo's
    for old, now in zip(source.backbone.weights, new.backbone.weights, strict=True):
        np.testing.assert_array_equal(old.numpy(), now.numpy())
    same = build_yolov8(num_classes=20, image_size=64, weights=f"zoo:{YOLO}")
    head = "yolo_v8_head_1_class_3_conv"
    np.testing.assert_array_equal(
        same.get_layer(head).bias.numpy(), source.get_layer(head).bias.numpy()
    )

    source = zoo.load(RETINANET)
    new = build_retinanet(num_classes=3, image_size=64, weights=f"zoo:{RETINANET}")
    assert new.bounding_box_format == "xyxy" and new.num_classes == 3
    for part in ("backbone", "box_head"):
        for old, now in zip(getattr(source, part).weights, getattr(new, part).weights, strict=True):
            np.testing.assert_array_equal(old.numpy(), now.numpy())
    with pytest.raises(ValueError, match="is a retinanet model, not a YOLOv8"):
        build_yolov8(num_classes=3, image_size=64, weights=f"zoo:{RETINANET}")


@pytest.mark.slow
@pytest.mark.parametrize("family, name", [("yolov8", YOLO), ("retinanet", RETINANET)])
def test_kdet_train_init_zoo(family, name, zoo_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("KDET_ZOO", str(zoo_dir))
    make_shapes(tmp_path, num_images=12)
    sets = ["train.image_size=64", "train.batch_size=4", "train.epochs=1"]
    args = ["train", family, "--data", "shapes", "--init", f"zoo:{name}"]
    code, out, err = run_cli(capsys, *args, *[x for s in sets for x in ("--set", s)])
    assert code == 0, err[-3000:]
    assert json.loads(out.splitlines()[-1])["train"]["final_loss"] > 0
    other = RETINANET if family == "yolov8" else YOLO
    code, _, err = run_cli(capsys, "train", family, "--data", "shapes", "--init", f"zoo:{other}")
    assert code == 1 and f"cannot start a {family} model" in err


def test_zoo_download_saves_a_folder_for_kdet_zoo(zoo_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("KDET_ZOO", str(zoo_dir))  # "downloads" from the local copy
    code, out, err = run_cli(capsys, "zoo", "download", YOLO, "--out", tmp_path / "copy")
    assert code == 0, err
    assert json.loads(out) == {"name": YOLO, "folder": str(tmp_path / "copy" / YOLO)}
    monkeypatch.setenv("KDET_ZOO", str(tmp_path / "copy"))
    assert zoo.resolve(YOLO)[1] == tmp_path / "copy" / YOLO
    assert zoo.load(YOLO).num_classes == 20
