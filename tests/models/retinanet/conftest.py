import pytest

pytest.importorskip("keras_hub")

from kdet.datasets.records import RecordSet  # noqa: E402
from tests.models.yolov8.conftest import CLASS_NAMES, draw_records  # noqa: E402


@pytest.fixture(scope="session")
def tiny_records(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_retinanet")
    train = draw_records(folder, 8, seed=0, split="train")
    test = draw_records(folder, 2, size=(48, 80), seed=1, split="test")
    return RecordSet("tiny", list(CLASS_NAMES), train.records + test.records, folder)
