import numpy as np
import pytest
import tensorflow as tf

from kdet.data import resize_geometry, resize_with_boxes


def test_stretch_scales_boxes_per_axis():
    image = tf.zeros((50, 100, 3), tf.uint8)
    boxes = tf.constant([[10.0, 5.0, 60.0, 45.0]])
    resized, moved = resize_with_boxes(image, boxes, (100, 200))
    assert tuple(resized.shape) == (100, 200, 3)
    np.testing.assert_allclose(moved.numpy(), [[20.0, 10.0, 120.0, 90.0]])


def test_keep_aspect_ratio_pads_centred_and_shifts_boxes():
    # A 50x100 (h x w) image into 100x100: scale 1, 25 rows of padding above and below.
    image = tf.fill((50, 100, 3), 200.0)
    boxes = tf.constant([[0.0, 0.0, 100.0, 50.0], [10.0, 10.0, 20.0, 30.0]])
    resized, moved = resize_with_boxes(image, boxes, (100, 100), keep_aspect_ratio=True)
    np.testing.assert_allclose(moved.numpy(), [[0.0, 25.0, 100.0, 75.0], [10.0, 35.0, 20.0, 55.0]])
    pixels = resized.numpy()
    assert (pixels[:25] == 0).all() and (pixels[75:] == 0).all()
    assert (pixels[25:75] == 200).all()


@pytest.mark.parametrize(("height", "width"), [(64, 48), (30, 90), (224, 224)])
def test_box_over_whole_image_covers_resized_content(height, width):
    image = tf.fill((height, width, 3), 255.0)
    whole = tf.constant([[0.0, 0.0, float(width), float(height)]])
    resized, moved = resize_with_boxes(image, whole, (40, 60), keep_aspect_ratio=True)
    x1, y1, x2, y2 = moved.numpy()[0]
    content = resized.numpy()[..., 0] > 127
    rows, cols = np.nonzero(content)
    assert (x1, y1, x2, y2) == (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1)


def test_geometry_inverts():
    resized_h, resized_w, sy, sx, oy, ox = resize_geometry(300, 200, (224, 224), True)
    assert (int(resized_h), int(resized_w)) == (224, 149)
    # Map a resized point back to the original image.
    # The centre of the padded image is the centre of the original.
    x, y = (112.0 - float(ox)) / float(sx), (112.0 - float(oy)) / float(sy)
    assert abs(x - 100.0) < 1.0 and abs(y - 150.0) < 1.0
