"""Mark ids stay with objects across frames; fresh ids for new objects; timed re-use."""

from __future__ import annotations

import numpy as np

from spatial_llava_ros.marks import MarkEngine, MarkerConfig
from spatial_llava_ros.marks.tracker import MarkTracker
from spatial_llava_ros.scene.trajectory import render_trajectory

S = 1_000_000_000  # ns


def _square(x: int, y: int, size: int = 20, shape=(120, 160)):
    m = np.zeros(shape, bool)
    m[y:y + size, x:x + size] = True
    return m, (x, y, x + size, y + size)


def _assign(tr, items, t, centroids=None):
    masks, boxes = zip(*items) if items else ((), ())
    return tr.assign(list(masks), list(boxes), centroids or [None] * len(items), int(t * S))


def test_ids_follow_moving_objects_and_new_objects_get_fresh_ids():
    tr = MarkTracker(reuse_timeout_s=2.0)
    assert _assign(tr, [_square(10, 10), _square(100, 60)], 1) == [1, 2]
    # both move a little, listed in the other order
    assert _assign(tr, [_square(104, 62), _square(13, 11)], 1.1) == [2, 1]
    # a new object appears: the next free number
    assert _assign(tr, [_square(16, 12), _square(107, 63), _square(60, 90)], 1.2) == [1, 2, 3]


def test_id_is_reserved_while_gone_and_reused_after_timeout():
    tr = MarkTracker(reuse_timeout_s=2.0)
    _assign(tr, [_square(10, 10), _square(100, 60)], 0.0 + 1)
    # object 1 leaves; a new object elsewhere must not take its number
    assert _assign(tr, [_square(100, 60), _square(50, 90)], 1.5) == [2, 3]
    # object 1 comes back within the timeout: same number
    assert _assign(tr, [_square(11, 10), _square(100, 60), _square(50, 90)], 2.5) == [1, 2, 3]
    # now gone for longer than the timeout: its number is free again
    assert _assign(tr, [_square(100, 60), _square(50, 90)], 3.0) == [2, 3]
    assert _assign(tr, [_square(100, 60), _square(50, 90), _square(130, 5)], 5.6) == [2, 3, 1]


def test_centroid_links_an_object_whose_mask_jumped():
    tr = MarkTracker(reuse_timeout_s=2.0, max_centroid_distance_m=0.25)
    c = np.array([0.1, 0.2, 2.0])
    _assign(tr, [_square(10, 10), _square(100, 60)], 1, [c, np.array([1.0, 0.0, 3.0])])
    ids = _assign(tr, [_square(40, 10)], 1.1, [c + 0.05])  # no overlap, same 3D place
    assert ids == [1]
    far = _assign(tr, [_square(70, 10)], 1.2, [c + np.array([1.5, 0, 0])])
    assert far == [3]  # no overlap and 1.5 m away: a different object


def test_time_going_backwards_resets():
    tr = MarkTracker()
    _assign(tr, [_square(10, 10), _square(100, 60)], 10)
    assert _assign(tr, [_square(100, 60)], 5) == [1]


def test_engine_ids_are_stable_along_a_trajectory():
    traj = render_trajectory(4, n_frames=6, width=160, height=120)
    engine = MarkEngine(MarkerConfig(min_area=30))
    prev, kept, pairs = {}, 0, 0
    for f in traj.frames:
        marked = engine.process(f.rgb, f.depth, f.intrinsics, stamp_ns=f.stamp_ns)
        cur = {}
        for iid in np.unique(f.instance_mask):
            gt = f.instance_mask == iid
            if iid == 0 or gt.sum() < 60:
                continue
            best = max(marked.marks, key=lambda m: np.logical_and(gt, m.mask).sum() /
                       np.logical_or(gt, m.mask).sum(), default=None)
            if best is not None and np.logical_and(gt, best.mask).sum() / \
                    np.logical_or(gt, best.mask).sum() >= 0.5:
                cur[iid] = best.mark_id
        for iid, mid in cur.items():
            if iid in prev:
                pairs += 1
                kept += prev[iid] == mid
        prev = cur
    assert pairs >= 10 and kept / pairs >= 0.95
    engine.reset()
    f = traj.frames[0]
    assert engine.process(f.rgb, f.depth, f.intrinsics).mark_ids[:1] == [1]


def test_camera_pan_larger_than_a_small_object_keeps_its_id():
    tr = MarkTracker(reuse_timeout_s=2.0)
    big0, small0 = _square(20, 20, 60), _square(110, 80, 10)
    assert _assign(tr, [big0, small0], 1) == [1, 2]
    # everything moves 16 px right: the small square no longer overlaps its old place
    big1, small1 = _square(36, 20, 60), _square(126, 80, 10)
    assert _assign(tr, [small1, big1], 1.1) == [2, 1]
    # without the big object to show the pan, the small one would be new
    lone = MarkTracker(reuse_timeout_s=2.0)
    _assign(lone, [small0], 1)
    assert _assign(lone, [small1], 1.1) == [2]
