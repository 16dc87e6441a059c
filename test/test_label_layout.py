"""``auto`` label layout (issue 14): no two labels touch, no object is hidden, a label that
cannot have a place drops its mark with a note; on synthetic scenes, real photographs, a
real RGB-D frame and crowded random frames. Plus digit size across camera resolutions."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from needs import needs

from spatial_llava_ros.marks.engine import mark_frame
from spatial_llava_ros.marks.placement import (
    AUTO_COVER,
    MODEL_SIDE,
    label_style,
    layout_labels,
)
from spatial_llava_ros.marks.render import draw_numbers
from spatial_llava_ros.training.synthetic import SomSettings, marked_scene

GAP = 2  # px between any two label rectangles, at least


def gap(a, b) -> int:
    """Pixels between two rectangles (x0, y0, x1, y1; max exclusive); <= 0 = they touch."""
    return max(a[0] - b[2], b[0] - a[2], a[1] - b[3], b[1] - a[3])


def check_frame(marked) -> None:
    """The layout's promises on one marked frame (style ``number``)."""
    h, w = marked.image.shape[:2]
    rects = [m.label_rect for m in marked.marks]
    assert all(r is not None for r in rects)
    for r in rects:
        assert 0 <= r[0] < r[2] <= w and 0 <= r[1] < r[3] <= h, r
    for i, a in enumerate(rects):
        for b in rects[i + 1:]:
            assert gap(a, b) >= GAP, (a, b)
    changed = np.any(marked.image != marked.rgb, axis=2)
    for m in marked.marks:
        unchanged = 1.0 - changed[m.mask].mean()
        assert unchanged >= 0.5, (m.mark_id, unchanged)
        if m.leader is not None:  # a label off its object points at it
            x0, y0, x1, y1 = m.label_rect
            assert not m.mask[y0:y1, x0:x1].any()
            (u, v) = m.leader[1]
            assert m.mask[v, u]


@pytest.mark.parametrize('text_height', [14.0, 20.0, 40.0])
def test_synthetic_scenes(text_height):
    s = SomSettings(320, 240, text_height, 'number', 'depth', 'auto')
    for seed in range(7000, 7012):
        f = marked_scene(seed, s, keep=True)
        check_frame(f.marked)


@needs('skimage')
@pytest.mark.parametrize('name', ['astronaut', 'coffee', 'chelsea', 'rocket'])
def test_real_photographs(name):
    from real_frames import photo

    marked = mark_frame(photo(name), proposals='color', label_placement='auto',
                        text_height_336=20.0)
    assert len(marked.marks) >= 3
    check_frame(marked)


@needs('skimage')
def test_real_rgbd_frame():
    from real_frames import motorcycle_rgbd

    rgb, depth, k = motorcycle_rgbd()
    marked = mark_frame(rgb, depth, k, proposals='depth', label_placement='auto',
                        text_height_336=20.0)
    assert len(marked.marks) >= 3
    check_frame(marked)


def test_interior_when_the_number_is_small_beside_when_it_would_hide_the_object():
    h, w = 240, 320
    big = np.zeros((h, w), bool)
    big[40:200, 20:160] = True
    small = np.zeros((h, w), bool)
    small[100:112, 230:242] = True
    style = label_style(h, w, 20.0)
    layout = layout_labels([big, small], [(20, 40, 160, 200), (230, 100, 242, 112)],
                           ['1', '2'], style, 'auto')
    size = style.text_size('2')
    assert size[0] * size[1] > AUTO_COVER * small.sum()
    x0, y0, x1, y1 = layout.rects[0]
    assert big[y0:y1, x0:x1].all()  # on the big object
    x0, y0, x1, y1 = layout.rects[1]
    assert not small[y0:y1, x0:x1].any()  # beside the small one


def test_a_mark_without_a_free_place_is_dropped_with_a_note():
    """A wall of tiny objects: not every number fits, and the engine says which it left out."""
    h, w = 120, 160
    masks = []
    for r in range(6):
        for c in range(8):
            m = np.zeros((h, w), bool)
            m[10 + r * 18:10 + r * 18 + 8, 8 + c * 18:8 + c * 18 + 8] = True
            masks.append(m)
    dets = [{'mask': m, 'score': 0.9} for m in masks]
    marked = mark_frame(np.full((h, w, 3), 90, np.uint8), detections=dets,
                        proposals='detections', label_placement='auto', text_height_336=20.0,
                        max_marks=48, min_area=10)
    assert 0 < len(marked.marks) < len(masks)
    assert any('dropped' in n for n in marked.notes)
    check_frame(marked)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 150), st.integers(0, 110), st.integers(3, 60),
                          st.integers(3, 60)), min_size=1, max_size=30),
       st.sampled_from([14.0, 20.0, 40.0]))
def test_crowded_random_frames(boxes, text_height):
    h, w = 120, 160
    owner = np.zeros((h, w), np.int32)
    for k, (x, y, bw, bh) in enumerate(boxes):
        owner[y:y + bh, x:x + bw] = k + 1  # later boxes cover earlier ones: no overlap
    masks, rects, texts = [], [], []
    for k in range(len(boxes)):
        m = owner == k + 1
        if m.sum() < 4:
            continue
        ys, xs = np.nonzero(m)
        masks.append(m)
        rects.append((int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1))
        texts.append(str(len(masks)))
    if not masks:
        return
    style = label_style(h, w, text_height)
    layout = layout_labels(masks, rects, texts, style, 'auto')
    kept = [i for i, a in enumerate(layout.anchors) if a is not None]
    placed = [layout.rects[i] for i in kept]
    for i, a in enumerate(placed):
        for b in placed[i + 1:]:
            assert gap(a, b) >= GAP
    rgb = np.full((h, w, 3), 90, np.uint8)
    image = draw_numbers(rgb, {int(texts[i]): layout.anchors[i] for i in kept}, style,
                         leaders=[layout.leaders[i] for i in kept if layout.leaders[i]])
    changed = np.any(image != rgb, axis=2)
    for m in masks:
        assert 1.0 - changed[m].mean() >= 0.5


@pytest.mark.parametrize('w,h', [(320, 240), (640, 480), (1280, 720), (1920, 1080)])
@pytest.mark.parametrize('text_height', [20.0, 40.0])
def test_digits_keep_their_trained_height_after_the_models_resize(w, h, text_height):
    """Draw "0" as the engine does and measure its ink after LLaVA's pad-and-resize."""
    import cv2

    from spatial_llava_ros.marks.placement import FONT

    style = label_style(h, w, text_height)
    canvas = np.zeros((h, w), np.uint8)
    cv2.putText(canvas, '0', (w // 2, h // 2), FONT, style.scale, 255, style.thickness,
                cv2.LINE_AA)
    rows = np.nonzero(canvas.max(axis=1) > 127)[0]
    ink = (rows.max() - rows.min() + 1) * MODEL_SIDE / max(h, w)
    assert ink >= 0.9 * text_height, ink
