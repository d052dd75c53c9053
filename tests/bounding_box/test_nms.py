import numpy as np
import pytest
import tensorflow as tf

from kdet.bounding_box import FORMATS, convert_format, non_max_suppression
from tests.bounding_box.helpers import IMAGE_SHAPE, random_xyxy


def clustered_detections(rng, count=60, num_classes=4):
    """Boxes jittered around a few centres, so NMS has plenty to suppress."""
    centres = random_xyxy(rng, (5,))
    boxes = centres[rng.integers(0, 5, count)] + rng.normal(0, 2.0, (count, 4))
    boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 1)
    scores = rng.uniform(size=count).astype("float32")
    classes = rng.integers(0, num_classes, count).astype("float32")
    return boxes.astype("float32"), scores, classes


def per_class_oracle(boxes, scores, classes, iou_threshold, score_threshold, max_detections):
    """Class-wise NMS the slow way: one `tf.image.non_max_suppression` per class."""
    kept = []
    for class_id in np.unique(classes):
        (index,) = np.nonzero(classes == class_id)
        chosen = tf.image.non_max_suppression(
            boxes[index][:, [1, 0, 3, 2]],  # yxyx, as TF documents
            scores[index],
            max_output_size=len(index),
            iou_threshold=iou_threshold,
            score_threshold=score_threshold,
        ).numpy()
        kept.extend(index[chosen])
    kept = np.array(sorted(kept, key=lambda i: -scores[i]), int)
    return kept[:max_detections]


@pytest.mark.parametrize(
    ("seed", "iou_threshold", "score_threshold", "max_detections"),
    [(0, 0.5, 0.0, 100), (1, 0.3, 0.2, 100), (2, 0.7, 0.0, 100), (3, 0.5, 0.1, 7)],
)
def test_matches_per_class_oracle(seed, iou_threshold, score_threshold, max_detections):
    rng = np.random.default_rng(seed)
    boxes, scores, classes = clustered_detections(rng)
    every_kept = per_class_oracle(
        boxes, scores, classes, iou_threshold, score_threshold, max_detections=len(boxes)
    )
    class_agnostic = tf.image.non_max_suppression(
        boxes, scores, len(boxes), iou_threshold, score_threshold
    )
    # Not trivial: some boxes are suppressed, and more would be without the classes.
    assert len(class_agnostic) < len(every_kept) < len(boxes)
    kept = every_kept[:max_detections]

    result = non_max_suppression(
        boxes,
        scores,
        classes,
        bounding_box_format="xyxy",
        iou_threshold=iou_threshold,
        score_threshold=score_threshold,
        max_detections=max_detections,
    )

    count = int(result["num_detections"])
    assert count == len(kept)
    np.testing.assert_array_equal(result["boxes"][:count], boxes[kept])
    np.testing.assert_array_equal(result["confidence"][:count], scores[kept])
    np.testing.assert_array_equal(result["classes"][:count], classes[kept])
    np.testing.assert_array_equal(result["boxes"][count:], -1)
    np.testing.assert_array_equal(result["confidence"][count:], -1)
    np.testing.assert_array_equal(result["classes"][count:], -1)
    assert result["boxes"].shape == (max_detections, 4)


def test_overlapping_boxes_of_different_classes_both_survive():
    boxes = np.array([[10, 10, 50, 50], [12, 12, 52, 52], [11, 11, 51, 51]], "float32")
    scores = np.array([0.9, 0.8, 0.7], "float32")
    classes = np.array([1, 2, 1], "int32")  # the third overlaps the first, same class

    result = non_max_suppression(
        boxes, scores, classes, bounding_box_format="xyxy", max_detections=4
    )

    assert int(result["num_detections"]) == 2
    np.testing.assert_array_equal(result["boxes"][:2], boxes[:2])
    np.testing.assert_array_equal(result["classes"], [1, 2, -1, -1])
    np.testing.assert_allclose(result["confidence"], [0.9, 0.8, -1, -1])


def test_padding_and_negative_classes_are_ignored():
    boxes = np.array([[0, 0, 10, 10], [-1, -1, -1, -1], [20, 20, 30, 30]], "float32")
    result = non_max_suppression(
        boxes, [0.5, 0.9, 0.8], [0, 0, -1], bounding_box_format="xyxy", max_detections=3
    )
    assert int(result["num_detections"]) == 1
    np.testing.assert_array_equal(result["boxes"][0], boxes[0])


@pytest.mark.parametrize("bounding_box_format", FORMATS)
def test_every_format_keeps_the_same_boxes(bounding_box_format):
    rng = np.random.default_rng(5)
    boxes, scores, classes = clustered_detections(rng)
    reference = non_max_suppression(boxes, scores, classes, bounding_box_format="xyxy")
    converted = convert_format(boxes, "xyxy", bounding_box_format, image_shape=IMAGE_SHAPE)

    result = non_max_suppression(
        converted, scores, classes, bounding_box_format=bounding_box_format
    )

    np.testing.assert_array_equal(result["confidence"], reference["confidence"])
    np.testing.assert_allclose(
        convert_format(result["boxes"], bounding_box_format, "xyxy", image_shape=IMAGE_SHAPE),
        reference["boxes"],
        atol=1e-3,
    )


def test_batched_equals_one_image_at_a_time_in_tf_function():
    rng = np.random.default_rng(6)
    images = [clustered_detections(rng, count=40) for _ in range(3)]
    boxes, scores, classes = (np.stack(parts) for parts in zip(*images, strict=True))
    boxes[1, 30:] = -1  # padded detections of a shorter image
    classes[1, 30:] = -1

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, None, 4]),
            tf.TensorSpec([None, None]),
            tf.TensorSpec([None, None]),
        ]
    )
    def batched_nms(boxes, scores, classes):
        return non_max_suppression(
            boxes, scores, classes, bounding_box_format="xyxy", max_detections=20
        )

    result = batched_nms(boxes, scores, classes)

    assert result["boxes"].shape == (3, 20, 4)
    for index in range(3):
        single = non_max_suppression(
            boxes[index],
            scores[index],
            classes[index],
            bounding_box_format="xyxy",
            max_detections=20,
        )
        for key, value in single.items():
            np.testing.assert_array_equal(result[key][index], value)


def test_no_boxes_at_all():
    result = non_max_suppression(
        np.zeros((0, 4), "float32"),
        np.zeros(0),
        np.zeros(0),
        bounding_box_format="xyxy",
        max_detections=2,
    )
    assert int(result["num_detections"]) == 0
    np.testing.assert_array_equal(result["boxes"], -1)


def test_errors():
    with pytest.raises(ValueError, match="Received: bounding_box_format='corners'"):
        non_max_suppression(np.zeros((1, 4)), [1.0], [0], bounding_box_format="corners")
    with pytest.raises(ValueError, match=r"Received: boxes.shape=\(1, 1, 1, 4\)"):
        non_max_suppression(np.zeros((1, 1, 1, 4)), [1.0], [0], bounding_box_format="xyxy")


def test_exported_serving_graph_loads_and_runs(tmp_path):
    class Postprocess(tf.Module):
        @tf.function(
            input_signature=[
                tf.TensorSpec([None, None, 4]),
                tf.TensorSpec([None, None]),
                tf.TensorSpec([None, None]),
                tf.TensorSpec([None, None, None, 3]),
            ]
        )
        def serve(self, boxes, scores, classes, images):
            pixels = convert_format(boxes, "rel_yxyx", "xyxy", images=images)
            return non_max_suppression(
                pixels, scores, classes, bounding_box_format="xyxy", max_detections=5
            )

    tf.saved_model.save(Postprocess(), str(tmp_path))
    loaded = tf.saved_model.load(str(tmp_path))
    boxes = np.array([[[0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 0.5, 0.49], [0.5, 0.5, 1.0, 1.0]]])
    result = loaded.serve(
        tf.constant(boxes, tf.float32),
        tf.constant([[0.9, 0.8, 0.7]]),
        tf.constant([[0.0, 0.0, 0.0]]),
        tf.zeros((1, 20, 40, 3)),
    )
    assert result["num_detections"].numpy().tolist() == [2]
    np.testing.assert_allclose(result["boxes"][0, :2], [[0, 0, 20, 10], [20, 10, 40, 20]])
