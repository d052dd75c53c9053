import dataclasses

import numpy as np

from kdet.models import get_model
from kdet.models.single_box import FeatureCache, split_at_backbone
from kdet.models.single_box.data import load_single_box_data


def extractor_for(seed, image_size=(32, 32)):
    import keras

    keras.utils.set_random_seed(seed)
    model = get_model("bbox_regressor", backbone="small_cnn", image_size=image_size)
    return split_at_backbone(model)[0]


def test_cache_hits_and_is_invalidated_by_each_key(toy_records, tmp_path):
    cache = FeatureCache(tmp_path / "features")
    images = load_single_box_data(toy_records, image_size=(32, 32)).images
    extractor = extractor_for(seed=0)

    first, hit = cache.get_or_compute(extractor, images, records=toy_records, precision="float32")
    assert not hit and first.shape == (24, 2, 2, 128)
    np.testing.assert_allclose(
        first, extractor.predict(images.astype("float32"), verbose=0), rtol=1e-5, atol=1e-6
    )
    again, hit = cache.get_or_compute(extractor, images, records=toy_records, precision="float32")
    assert hit
    np.testing.assert_array_equal(again, first)

    # Each part of the key gives a miss: precision, weights, records, input size.
    _, hit = cache.get_or_compute(extractor, images, records=toy_records, precision="bf16")
    assert not hit
    _, hit = cache.get_or_compute(
        extractor_for(seed=1), images, records=toy_records, precision="float32"
    )
    assert not hit
    moved = dataclasses.replace(toy_records.records[0], split="test")
    changed = dataclasses.replace(toy_records, records=[moved, *toy_records.records[1:]])
    _, hit = cache.get_or_compute(extractor, images, records=changed, precision="float32")
    assert not hit
    small = load_single_box_data(toy_records, image_size=(40, 40)).images
    _, hit = cache.get_or_compute(
        extractor_for(seed=0, image_size=(40, 40)), small, records=toy_records, precision="float32"
    )
    assert not hit
    assert len(list((tmp_path / "features").glob("*.npy"))) == 5
