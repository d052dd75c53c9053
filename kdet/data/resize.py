"""Resize an image to a fixed size and move its boxes with it.

Example:
    >>> import tensorflow as tf
    >>> image, boxes = resize_with_boxes(
    ...     tf.zeros((100, 200, 3), tf.uint8), tf.constant([[0.0, 0.0, 200.0, 100.0]]), (50, 50)
    ... )
    >>> boxes.numpy().tolist()
    [[0.0, 0.0, 50.0, 50.0]]
"""

import tensorflow as tf


def resize_geometry(height, width, image_size, keep_aspect_ratio: bool = False):
    """Scale and offset that map an image of ``height x width`` onto ``image_size``.

    Without ``keep_aspect_ratio`` the image is stretched to fill ``image_size``. With it,
    the image is scaled by ``min(target_h / h, target_w / w)`` and centred, the rest
    being padding. A point ``(x, y)`` of the original image lands at
    ``(x * scale_x + offset_x, y * scale_y + offset_y)``; use this to map predictions
    back to the original image.

    Args:
        height: original height (int or scalar tensor).
        width: original width (int or scalar tensor).
        image_size: ``(target_height, target_width)``.
        keep_aspect_ratio: pad instead of stretching.

    Returns:
        ``(resized_height, resized_width, scale_y, scale_x, offset_y, offset_x)``: the size
        of the resized content (int32) and float32 scalars.

    Example:
        >>> [float(v) for v in resize_geometry(100, 200, (50, 50), keep_aspect_ratio=True)]
        [25.0, 50.0, 0.25, 0.25, 12.0, 0.0]
    """
    target_h, target_w = int(image_size[0]), int(image_size[1])
    height = tf.cast(height, tf.float32)
    width = tf.cast(width, tf.float32)
    if keep_aspect_ratio:
        scale = tf.minimum(target_h / height, target_w / width)
        resized_h = tf.clip_by_value(tf.round(height * scale), 1.0, target_h)
        resized_w = tf.clip_by_value(tf.round(width * scale), 1.0, target_w)
        offset_y = tf.floor((target_h - resized_h) / 2.0)
        offset_x = tf.floor((target_w - resized_w) / 2.0)
    else:
        resized_h = tf.constant(float(target_h))
        resized_w = tf.constant(float(target_w))
        offset_y = offset_x = tf.constant(0.0)
    return (
        tf.cast(resized_h, tf.int32),
        tf.cast(resized_w, tf.int32),
        resized_h / height,
        resized_w / width,
        offset_y,
        offset_x,
    )


def resize_with_boxes(image, boxes, image_size, keep_aspect_ratio: bool = False):
    """Resize one image (bilinear) to ``image_size`` and scale its absolute ``xyxy`` boxes.

    Args:
        image: ``(H, W, C)`` tensor of any numeric dtype.
        boxes: ``(N, 4)`` float32 absolute-pixel ``xyxy`` boxes of ``image``.
        image_size: ``(target_height, target_width)``.
        keep_aspect_ratio: scale uniformly and pad with zeros around the centred image
            (boxes are shifted by the padding) instead of stretching.

    Returns:
        ``(image, boxes)``: float32 ``(target_height, target_width, C)`` and the boxes in
        the resized image's pixels.

    Example:
        >>> image, boxes = resize_with_boxes(
        ...     tf.zeros((100, 200, 3)), tf.constant([[0.0, 0.0, 200.0, 100.0]]), (50, 50),
        ...     keep_aspect_ratio=True)
        >>> boxes.numpy().tolist()
        [[0.0, 12.0, 50.0, 37.0]]
    """
    target_h, target_w = int(image_size[0]), int(image_size[1])
    shape = tf.shape(image)
    resized_h, resized_w, scale_y, scale_x, offset_y, offset_x = resize_geometry(
        shape[0], shape[1], image_size, keep_aspect_ratio
    )
    image = tf.image.resize(image, tf.stack([resized_h, resized_w]), method="bilinear")
    if keep_aspect_ratio:
        image = tf.image.pad_to_bounding_box(
            image, tf.cast(offset_y, tf.int32), tf.cast(offset_x, tf.int32), target_h, target_w
        )
    image.set_shape((target_h, target_w, image.shape[-1]))
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    boxes = boxes * tf.stack([scale_x, scale_y, scale_x, scale_y]) + tf.stack(
        [offset_x, offset_y, offset_x, offset_y]
    )
    return image, boxes
