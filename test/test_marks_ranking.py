"""Objects before fragments: when a frame has more proposals than ``max_marks``, the cap
keeps the ones shaped like whole objects (marks/ranking.py)."""

import numpy as np

from spatial_llava_ros.marks.filtering import filter_proposals, mask_box
from spatial_llava_ros.marks.proposals import Proposal
from spatial_llava_ros.marks.ranking import objectness

H, W = 240, 320


def _rect(x0, y0, x1, y1):
    m = np.zeros((H, W), bool)
    m[y0:y1, x0:x1] = True
    return m


def _disc(cx, cy, r):
    yy, xx = np.mgrid[:H, :W]
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r


def test_an_object_outranks_a_floor_patch_a_sliver_and_a_wall():
    obj = _disc(160, 120, 18)
    floor = _rect(0, 180, 320, 240)  # touches three borders, a fifth of the frame
    sliver = _rect(40, 50, 140, 53)  # a shelf edge
    depth = np.full((H, W), 2.0, np.float32)
    depth[180:] = np.linspace(1.0, 4.0, 60, dtype=np.float32)[:, None]  # the floor recedes
    scores = {name: objectness(m, mask_box(m), depth)
              for name, m in [('object', obj), ('floor', floor), ('sliver', sliver)]}
    assert scores['object'] > max(scores['floor'], scores['sliver']), scores
    patch = _rect(200, 20, 260, 60)
    flat = objectness(patch, mask_box(patch), depth)
    depth[20:60, 200:260] = np.linspace(1.0, 5.0, 60, dtype=np.float32)[None, :]
    assert objectness(patch, mask_box(patch), depth) < flat  # a depth span: not an object


def test_the_cap_keeps_the_objects():
    objects = [_disc(60, 100, 15), _disc(160, 110, 20), _disc(250, 90, 12)]
    fragments = [_rect(0, 200, 320, 240), _rect(0, 0, 320, 12), _rect(10, 60, 120, 63),
                 _rect(300, 20, 320, 180), _rect(130, 30, 290, 33)]
    props = [Proposal(m, 1.0, None, mask_box(m)) for m in fragments + objects]
    kept, dropped = filter_proposals(
        props, (H, W), None, min_area=20, max_area_fraction=0.5, border_margin=2,
        border_max_fraction=1.0, min_depth_fraction=0.0, duplicate_iou=0.7,
        overlap_drop=0.5, max_marks=3)
    assert dropped['cap'] == len(fragments)
    assert sorted(int(p.mask.sum()) for p in kept) == sorted(int(m.sum()) for m in objects)
