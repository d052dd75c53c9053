"""Detection pictures: labels stay inside the image, one colour per class, thresholds hold."""

import numpy as np
import pytest
from PIL import Image

from kdet.datasets.records import Record, RecordSet
from kdet.visualize import PALETTE, class_colour, draw_detections, label_box, prediction_grid

SIZE = 200
# A 60x60 box at each corner and edge of a 200x200 image, and one in the middle.
POSITIONS = {
    "top_left": (0, 0),
    "top": (70, 0),
    "top_right": (140, 0),
    "right": (140, 70),
    "bottom_right": (140, 140),
    "bottom": (70, 140),
    "bottom_left": (0, 140),
    "left": (0, 70),
    "middle": (70, 70),
}


def blank():
    return np.zeros((SIZE, SIZE, 3), np.uint8)


def one(box, score=0.9, class_id=0):
    return {"boxes": [box], "scores": [score], "classes": [class_id]}


def pixels_of(image, colour):
    return np.all(image == np.array(colour, np.uint8), axis=-1)


@pytest.mark.parametrize("where", POSITIONS)
def test_label_box_stays_inside_the_image_and_next_to_the_box(where):
    x, y = POSITIONS[where]
    box = (x, y, x + 60, y + 60)
    x1, y1, x2, y2 = label_box(box, (90, 14), (SIZE, SIZE))
    assert 0 <= x1 < x2 <= SIZE and 0 <= y1 < y2 <= SIZE
    assert (x2 - x1, y2 - y1) == (90, 14)
    assert y2 == y or y1 == y  # just above the box, or just below its top edge
    assert x1 == x or x2 == SIZE  # at the box's left, or pushed in from the right edge


@pytest.mark.parametrize("where", POSITIONS)
def test_the_drawn_label_is_whole_at_every_corner_and_edge(where):
    x, y = POSITIONS[where]
    colour = class_colour(3)
    drawn = draw_detections(blank(), one((x, y, x + 60, y + 60), class_id=3), class_names="abcd")
    filled = pixels_of(drawn, colour)
    rows, cols = np.nonzero(filled)
    # The label's filled box: a solid run of the class colour at least ~40 px wide and
    # ~10 px high, somewhere fully inside the image (the line alone is 1 px wide).
    widest = max(np.count_nonzero(filled[r]) for r in set(rows))
    tallest = max(np.count_nonzero(filled[:, c]) for c in set(cols))
    assert widest >= 40 and tallest >= 10


def test_every_class_has_its_own_colour_in_the_palette_and_in_pixels():
    assert len(set(PALETTE)) == len(PALETTE) == 20
    assert class_colour(21) == class_colour(1)
    found = {
        "boxes": [[20, 60, 80, 120], [110, 60, 170, 120]],
        "scores": [0.9, 0.8],
        "classes": [0, 1],
    }
    drawn = draw_detections(blank(), found, class_names=["cat", "dog"])
    left, right = drawn[:, :95], drawn[:, 95:]
    assert (
        pixels_of(left, class_colour(0)).sum() > 50 and not pixels_of(left, class_colour(1)).any()
    )
    assert (
        pixels_of(right, class_colour(1)).sum() > 50 and not pixels_of(right, class_colour(0)).any()
    )


def test_boxes_under_the_threshold_are_not_drawn_and_the_input_is_untouched():
    image = blank()
    low = draw_detections(image, one((50, 50, 150, 150), score=0.3), score_threshold=0.5)
    assert not low.any()
    high = draw_detections(image, one((50, 50, 150, 150), score=0.7), score_threshold=0.5)
    assert pixels_of(high, class_colour(0)).any()
    assert pixels_of(high, (20, 20, 20)).any()  # the dark outline under the line
    assert not image.any()


def test_names_come_from_class_names_or_the_detections_own():
    found = {**one((50, 50, 150, 150)), "class_names": ["raccoon"]}
    assert draw_detections(blank(), found).any()
    with pytest.raises(ValueError, match="image.shape"):
        draw_detections(np.zeros((4, 4)), found)


def test_prediction_grid_draws_each_record(tmp_path):
    records = []
    for i in range(2):
        Image.fromarray(np.full((48, 64, 3), 90, np.uint8)).save(tmp_path / f"{i}.png")
        records.append(Record(f"{i}.png", 64, 48, [[8.0, 8.0, 40.0, 40.0]], [0], "test"))
    record_set = RecordSet("tiny", ["cat"], records, tmp_path)
    predictions = [one((8, 8, 40, 40), score=0.9), one((8, 8, 40, 40), score=0.1)]
    figure = prediction_grid(record_set, predictions, score_threshold=0.5)
    images = [axes.images[0].get_array() for axes in figure.axes]
    assert len(images) == 2 and images[0].shape[:2] == (360, 480)  # longer side 480
    assert pixels_of(images[0], class_colour(0)).any()
    assert not pixels_of(images[1], class_colour(0)).any()
    assert pixels_of(images[1], (255, 255, 255)).any()  # ground truth still drawn
