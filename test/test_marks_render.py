"""Mark placement, label size after the model's resize, styles, MarkedFrame lookups."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from spatial_llava_ros.errors import InputError, ResolveError
from spatial_llava_ros.marks import Mark, MarkedFrame
from spatial_llava_ros.marks.placement import label_rect, label_style, place_labels
from spatial_llava_ros.marks.render import STYLES, draw_marks


def _mark(mask: np.ndarray, mark_id: int = 1, anchor=None) -> Mark:
    ys, xs = np.nonzero(mask)
    box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
    return Mark(mark_id, mask, box, anchor or (int(xs.mean()), int(ys.mean())),
                int(mask.sum()), None)


def test_anchor_is_the_most_interior_point():
    mask = np.zeros((100, 100), bool)
    mask[10:30, 10:90] = True  # a bar ...
    mask[10:90, 10:30] = True  # ... and a leg: an L whose centroid is outside the thick part
    mask[50:90, 50:90] = True  # a separate thick square: the most interior region
    style = label_style(100, 100, 8)
    (anchor,) = place_labels([mask], [(10, 10, 90, 90)], ['1'], style)
    assert 60 <= anchor[0] <= 80 and 60 <= anchor[1] <= 80
    assert mask[anchor[1], anchor[0]]


def test_label_moves_off_another_label():
    h, w = 120, 160
    a = np.zeros((h, w), bool)
    a[40:80, 40:80] = True
    b = np.zeros((h, w), bool)
    b[30:90, 30:130] = True
    b[40:80, 40:80] = False  # b surrounds a: its most interior point is near a's centre
    style = label_style(h, w, 14)
    anchors = place_labels([a, b], [(40, 40, 80, 80), (30, 30, 130, 90)], ['1', '2'], style)
    ra = label_rect(anchors[0], '1', style, (h, w))
    rb = label_rect(anchors[1], '2', style, (h, w))
    overlap_x = min(ra[2], rb[2]) - max(ra[0], rb[0])
    overlap_y = min(ra[3], rb[3]) - max(ra[1], rb[1])
    assert overlap_x <= 0 or overlap_y <= 0
    assert b[anchors[1][1], anchors[1][0]]


def _covered(rect: tuple, mask: np.ndarray) -> int:
    x0, y0, x1, y1 = rect
    return int(mask[y0:y1, x0:x1].sum())


def test_beside_labels_leave_their_objects_visible():
    h, w = 240, 320
    a = np.zeros((h, w), bool)
    a[100:130, 100:130] = True  # two small objects a little apart
    b = np.zeros((h, w), bool)
    b[105:135, 170:200] = True
    style = label_style(h, w, 40)  # digits as large as the objects
    boxes = [(100, 100, 130, 130), (170, 105, 200, 135)]
    inside = place_labels([a, b], boxes, ['1', '12'], style)
    beside = place_labels([a, b], boxes, ['1', '12'], style, placement='beside')
    rects = [label_rect(anc, t, style, (h, w)) for anc, t in zip(beside, ['1', '12'])]
    assert _covered(label_rect(inside[0], '1', style, (h, w)), a) > 0  # interior hides it
    assert _covered(rects[0], a | b) == 0 and _covered(rects[1], a | b) == 0
    overlap_x = min(rects[0][2], rects[1][2]) - max(rects[0][0], rects[1][0])
    overlap_y = min(rects[0][3], rects[1][3]) - max(rects[0][1], rects[1][1])
    assert overlap_x < 0 or overlap_y < 0  # apart, not touching: "1" by "12" is not "112"
    for (x0, y0, x1, y1), (bx0, by0, bx1, by1) in zip(rects, boxes):  # next to its object
        assert max(bx0 - x1, x0 - bx1, by0 - y1, y0 - by1) <= 2


def test_unknown_placement_is_a_clear_error():
    mask = np.zeros((50, 50), bool)
    mask[10:20, 10:20] = True
    with pytest.raises(InputError, match='label_placement'):
        place_labels([mask], [(10, 10, 20, 20)], ['1'], label_style(50, 50), placement='above')


@pytest.mark.parametrize('size', [(480, 640), (720, 1280), (240, 320), (1080, 1920)])
def test_digits_stay_readable_after_resize_to_336(size):
    h, w = size
    mask = np.zeros((h, w), bool)
    mask[h // 4:3 * h // 4, w // 4:3 * w // 4] = True
    style = label_style(h, w)
    img = draw_marks(np.zeros((h, w, 3), np.uint8), [_mark(mask, 38, (w // 2, h // 2))],
                     'number', style)
    side = max(h, w)  # LLaVA-1.5: pad to a square, resize to 336
    square = np.zeros((side, side, 3), np.uint8)
    square[:h, :w] = img
    small = cv2.resize(square, (336, 336), interpolation=cv2.INTER_AREA)
    white = (small.min(axis=2) > 200)
    rows = np.flatnonzero(white.any(axis=1))
    assert rows.size and rows[-1] - rows[0] + 1 >= 10  # digit height in the model's input
    # outline: dark pixels right around the white strokes
    ring = cv2.dilate(white.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool) & ~white
    assert (small[ring].max(axis=1) < 120).mean() > 0.5


def test_styles_differ_and_keep_the_number():
    h, w = 120, 160
    mask = np.zeros((h, w), bool)
    mask[30:90, 40:120] = True
    rgb = np.full((h, w, 3), 90, np.uint8)
    style = label_style(h, w)
    m = _mark(mask, 7, (80, 60))
    images = {s: draw_marks(rgb, [m], s, style) for s in STYLES}
    for a in STYLES:
        for b in STYLES:
            if a < b:
                assert not np.array_equal(images[a], images[b]), (a, b)
    for img in images.values():
        assert (img[50:70, 70:90].min(axis=2) > 240).any()  # white digit at the anchor
    assert np.array_equal(images['number'][0:25], rgb[0:25])  # number only: no outline
    inside = images['tint'][35:45, 45:55].astype(int)
    assert np.abs(inside - 90).max() > 10  # tinted


def test_marked_frame_lookup():
    mask = np.zeros((10, 10), bool)
    mask[2:5, 2:5] = True
    frame = MarkedFrame(np.zeros((10, 10, 3), np.uint8), np.zeros((10, 10, 3), np.uint8),
                        [_mark(mask, 3), _mark(~mask, 5)])
    assert frame.mark_ids == [3, 5]
    assert frame.mark(5).pixel_count == 91
    with pytest.raises(ResolveError, match=r'no mark 4.*\[3, 5\]'):
        frame.mark(4)
    assert frame.label_map()[3, 3] == 3 and frame.label_map()[9, 9] == 5
    assert frame.marks[0].to_dict()['box'] == [2, 2, 5, 5]
