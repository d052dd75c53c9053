import numpy as np
import pytest
import tensorflow as tf

from kdet.data import build_pipeline, from_records


def _one_batch(record_set, **kwargs):
    kwargs.setdefault("batch_size", 4)
    return next(iter(build_pipeline(from_records(record_set), **kwargs)))


def test_batch_shapes_dtypes_and_padding(record_set):
    batch = _one_batch(record_set, image_size=(32, 40))
    images = batch["images"]
    boxes = batch["bounding_boxes"]["boxes"]
    classes = batch["bounding_boxes"]["classes"]
    assert images.dtype == tf.float32 and tuple(images.shape) == (4, 32, 40, 3)
    assert boxes.dtype == tf.float32 and tuple(boxes.shape) == (4, 3, 4)
    assert classes.dtype == tf.float32 and tuple(classes.shape) == (4, 3)
    counts = [len(r.classes) for r in record_set.records]
    for i, count in enumerate(counts):
        assert (classes[i, :count].numpy() >= 0).all()
        assert (classes[i, count:].numpy() == -1).all()
        assert (boxes[i, count:].numpy() == -1).all()
    # Boxes are scaled from each image's own size to 40x32.
    record = record_set.records[1]
    scale = np.array([40 / record.width, 32 / record.height] * 2)
    np.testing.assert_allclose(boxes[1, :2].numpy(), record.boxes_array() * scale, rtol=1e-5)
    assert images.numpy().min() >= 0 and images.numpy().max() <= 255


def test_max_boxes_and_split(record_set):
    batch = _one_batch(record_set, image_size=(16, 16), max_boxes=5)
    assert tuple(batch["bounding_boxes"]["boxes"].shape) == (4, 5, 4)
    test = next(iter(build_pipeline(from_records(record_set, "test"), image_size=(16, 16))))
    assert test["images"].shape[0] == 1
    with pytest.raises(ValueError, match="split 'val'"):
        from_records(record_set, "val")


@pytest.mark.parametrize(
    ("normalization", "low", "high"),
    [("none", 0, 255), ("unit", 0, 1), ("mobilenet_v2", -1, 1), ("vgg16", -124, 152)],
)
def test_normalisation_ranges(record_set, normalization, low, high):
    images = _one_batch(record_set, image_size=(16, 16), normalization=normalization)["images"]
    values = images.numpy()
    assert low - 1e-4 <= values.min() and values.max() <= high + 1e-4
    # The gradients span most of the range.
    assert values.max() - values.min() > 0.5 * (high - low)


def test_vgg16_is_bgr_minus_mean(record_set):
    raw = _one_batch(record_set, image_size=(16, 16))["images"].numpy()
    vgg = _one_batch(record_set, image_size=(16, 16), normalization="vgg16")["images"].numpy()
    np.testing.assert_allclose(vgg[..., 0], raw[..., 2] - 103.939, atol=1e-3)


def test_flip_mirrors_boxes(record_set):
    import keras

    class AlwaysFlip(keras.layers.RandomFlip):
        """Keras core's box-aware flip with every image flipped (its rate is fixed at 0.5)."""

        def get_random_transformation(self, data, training=True, seed=None):
            shape = keras.ops.shape(data["images"])
            return {"flips": keras.ops.ones((shape[0], 1, 1, 1), "bool"), "input_shape": shape}

    flip = AlwaysFlip(mode="horizontal", bounding_box_format="xyxy", dtype="float32")
    plain = _one_batch(record_set, image_size=(32, 32))
    flipped = _one_batch(record_set, image_size=(32, 32), augment=[flip])
    np.testing.assert_allclose(flipped["images"].numpy(), plain["images"].numpy()[:, :, ::-1])
    boxes = plain["bounding_boxes"]["boxes"].numpy()
    classes = plain["bounding_boxes"]["classes"].numpy()
    expected = np.stack([32 - boxes[..., 2], boxes[..., 1], 32 - boxes[..., 0], boxes[..., 3]], -1)
    expected[classes == -1] = -1
    np.testing.assert_allclose(flipped["bounding_boxes"]["boxes"].numpy(), expected, atol=1e-4)
    np.testing.assert_array_equal(flipped["bounding_boxes"]["classes"].numpy(), classes)


@pytest.mark.parametrize("seed", [0, 7])
def test_default_augmentation_keeps_contract_and_is_seeded(record_set, seed):
    def epochs(seed):
        dataset = build_pipeline(
            from_records(record_set),
            image_size=(32, 32),
            batch_size=2,
            augment=True,
            shuffle=True,
            seed=seed,
            max_boxes=4,
        )
        return [[b["images"].numpy() for b in dataset] for _ in range(2)]

    first, again = epochs(seed), epochs(seed)
    for a, b in zip(first, again, strict=True):
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x, y)
    # A second epoch is a new draw.
    assert any(not np.array_equal(x, y) for x, y in zip(first[0], first[1], strict=True))
    batch = next(
        iter(
            build_pipeline(
                from_records(record_set),
                image_size=(32, 32),
                batch_size=4,
                augment=True,
                seed=1,
                max_boxes=4,
            )
        )
    )
    assert tuple(batch["images"].shape) == (4, 32, 32, 3)
    assert tuple(batch["bounding_boxes"]["boxes"].shape) == (4, 4, 4)
    boxes = batch["bounding_boxes"]["boxes"].numpy()
    valid = batch["bounding_boxes"]["classes"].numpy() >= 0
    assert (boxes[valid] >= 0).all() and (boxes[valid] <= 32).all()


def test_output_box_format(record_set):
    plain = _one_batch(record_set, image_size=(32, 32))
    rel = _one_batch(record_set, image_size=(32, 32), bounding_box_format="rel_yxyx")
    boxes = plain["bounding_boxes"]["boxes"].numpy()
    valid = plain["bounding_boxes"]["classes"].numpy() >= 0
    rel_boxes = rel["bounding_boxes"]["boxes"].numpy()
    np.testing.assert_allclose(rel_boxes[valid], boxes[valid][:, [1, 0, 3, 2]] / 32, rtol=1e-5)
    assert (rel_boxes[~valid] == -1).all()
    upper = _one_batch(record_set, image_size=(32, 32), bounding_box_format="REL_YXYX")
    np.testing.assert_array_equal(upper["bounding_boxes"]["boxes"].numpy(), rel_boxes)
    with pytest.raises(ValueError, match="bounding_box_format"):
        build_pipeline(from_records(record_set), bounding_box_format="xxyy")


def test_file_cache_replays_without_images(record_set, tmp_path):
    cache = tmp_path / "cache" / "train"
    dataset = build_pipeline(from_records(record_set), image_size=(16, 16), cache=cache)
    first = [batch["images"].numpy() for batch in dataset]  # a full epoch writes the cache
    for record in record_set.records:
        record_set.image_path(record).unlink()
    again = [batch["images"].numpy() for batch in dataset]
    np.testing.assert_array_equal(np.concatenate(again), np.concatenate(first))


def test_corrupt_image_error_names_file(record_set):
    record_set.image_path(record_set.records[2]).write_bytes(b"\x00 not an image")
    dataset = build_pipeline(from_records(record_set), image_size=(16, 16), cache=False)
    with pytest.raises(tf.errors.InvalidArgumentError, match="alpha.png: not a JPEG"):
        next(iter(dataset))


def test_default_augmenters_are_keras_core_float32_and_seeded():
    import keras

    from kdet.data import augment_batch, default_augmenters

    rng = np.random.default_rng(0)
    batch = {
        "images": rng.uniform(0, 255, (4, 32, 32, 3)).astype("float32"),
        "bounding_boxes": {
            "boxes": np.array([[[4, 4, 20, 24], [-1, -1, -1, -1]]] * 4, "float32"),
            "classes": np.array([[1, -1]] * 4, "float32"),
        },
    }

    def run(seed):
        previous = keras.mixed_precision.global_policy()
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
        try:
            layers = default_augmenters((32, 32), seed=seed)
        finally:
            keras.mixed_precision.set_global_policy(previous)
        assert all(type(layer).__module__.startswith("keras.") for layer in layers)
        assert all(layer.compute_dtype == "float32" for layer in layers)
        out = augment_batch(batch, layers, max_boxes=3)
        return out["images"].numpy(), out["bounding_boxes"]["boxes"].numpy()

    for seed in (0, 3):
        (images, boxes), (again, boxes_again) = run(seed), run(seed)
        assert images.dtype == np.float32
        np.testing.assert_array_equal(images, again)
        np.testing.assert_array_equal(boxes, boxes_again)
        assert boxes.shape == (4, 3, 4) and (boxes[:, 1:] == -1).all()
    assert not np.array_equal(run(0)[0], run(1)[0])
