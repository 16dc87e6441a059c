"""Mark placement, label size after the model's resize, styles, MarkedFrame lookups."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from spatial_llava_ros.errors import ResolveError
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
