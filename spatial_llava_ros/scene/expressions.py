"""Referring expressions and VSR-style captions with ground truth from 3D geometry.

Relations are judged in the CAMERA's viewpoint: left/right by the optical-frame x of the
objects' box centres (and, to stay robust, also by their bearing in the image), in front
of/behind by distance from the camera (not by image row). Every predicate is three-valued:
True and False need a clear margin, anything in between is "ambiguous" and never used, so an
expression is kept only when its target clearly satisfies it and every other object of the
target's category clearly does not.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from spatial_llava_ros.scene.types import Expression, SceneObject, VsrCaption

RELATIONS: tuple[str, ...] = ('left_of', 'right_of', 'in_front_of', 'behind', 'nearest',
                              'farthest', 'between', 'next_to', 'largest', 'smallest',
                              'ordinal', 'color')
PAIR_RELATIONS: tuple[str, ...] = ('left_of', 'right_of', 'in_front_of', 'behind', 'next_to')
PHRASES = {'left_of': 'left of', 'right_of': 'right of', 'in_front_of': 'in front of',
           'behind': 'behind', 'next_to': 'next to'}
ORDINALS = ('first', 'second', 'third', 'fourth', 'fifth')

# Margins (metres / radians) that make the ground truth robust to how a person reads it.
LR_TRUE, LR_FALSE = 0.25, 0.10
BEARING_TRUE, BEARING_FALSE = math.radians(2.5), math.radians(1.0)
DEPTH_TRUE, DEPTH_FALSE = 0.40, 0.15
LATERAL_TRUE = 0.30  # in front of / behind: at most this far apart sideways
NEXT_TRUE, NEXT_FALSE = 0.45, 1.00
EXTREME_MARGIN = 0.35
VOLUME_RATIO = 1.7
ORDINAL_GAP = 0.20


def display_name(category: str) -> str:
    return category.replace('_', ' ')


@dataclass
class ObjectView:
    """An object as the camera sees it (optical frame: x right, y down, z forward)."""

    obj: SceneObject
    x: float
    z: float
    dist: float
    bearing: float
    volume: float
    x_min: float = math.nan  # extent of its 3D box along camera x
    x_max: float = math.nan

    @property
    def id(self) -> int:
        return self.obj.instance_id


def object_views(objects: list[SceneObject], camera_pose: np.ndarray) -> list[ObjectView]:
    """Camera-frame summary of each object's 3D box centre."""
    rot, trans = camera_pose[:3, :3], camera_pose[:3, 3]
    views = []
    for obj in objects:
        pc = (np.asarray(obj.center, float) - trans) @ rot
        xs = ((obj.corners() - trans) @ rot)[:, 0]
        views.append(ObjectView(obj, float(pc[0]), float(pc[2]), float(np.linalg.norm(pc)),
                                float(math.atan2(pc[0], pc[2])), float(np.prod(obj.size)),
                                float(xs.min()), float(xs.max())))
    return views


def _x_range(v: ObjectView) -> tuple[float, float]:
    return (v.x, v.x) if math.isnan(v.x_min) else (v.x_min, v.x_max)


def lateral_gap(a: ObjectView, b: ObjectView) -> float:
    """Gap between the two boxes' camera-x extents (negative when they overlap)."""
    (a0, a1), (b0, b1) = _x_range(a), _x_range(b)
    return max(a0 - b1, b0 - a1)


def left_of(a: ObjectView, b: ObjectView) -> bool | None:
    """a clearly left of b in camera x: each centre beyond the other's box (symmetric, so
    right_of(a, b) == left_of(b, a) means the same thing from the other side)."""
    dx, db = b.x - a.x, b.bearing - a.bearing
    if (dx >= LR_TRUE and db >= BEARING_TRUE and a.x <= _x_range(b)[0]
            and b.x >= _x_range(a)[1]):
        return True
    if dx <= -LR_FALSE and db <= -BEARING_FALSE:
        return False
    return None


def in_front_of(a: ObjectView, b: ObjectView) -> bool | None:
    """a clearly nearer the camera than b and not far off to b's side (then: ambiguous)."""
    dd, dz = b.dist - a.dist, b.z - a.z
    if dd >= DEPTH_TRUE and dz >= DEPTH_TRUE * 0.75:
        return True if lateral_gap(a, b) <= LATERAL_TRUE else None
    if dd <= -DEPTH_FALSE and dz <= -DEPTH_FALSE * 0.5:
        return False
    return None


def _footprint_radii(obj: SceneObject) -> tuple[float, float]:
    """Radius of the inscribed and of the circumscribed circle of its floor footprint."""
    return 0.5 * float(min(obj.size[0], obj.size[1])), 0.5 * float(np.hypot(*obj.size[:2]))


def next_to(a: ObjectView, b: ObjectView) -> bool | None:
    za = (a.obj.center[2] - a.obj.size[2] / 2, a.obj.center[2] + a.obj.size[2] / 2)
    zb = (b.obj.center[2] - b.obj.size[2] / 2, b.obj.center[2] + b.obj.size[2] / 2)
    if min(za[1], zb[1]) - max(za[0], zb[0]) <= 0.02:
        return None  # one stands on the other, or they are at different heights
    d = float(np.hypot(*(np.asarray(a.obj.center[:2]) - np.asarray(b.obj.center[:2]))))
    ia, ca = _footprint_radii(a.obj)
    ib, cb = _footprint_radii(b.obj)
    if d - ia - ib <= NEXT_TRUE:  # the largest the gap can be
        return True
    if d - ca - cb >= NEXT_FALSE:  # the smallest the gap can be
        return False
    return None


def between(a: ObjectView, b: ObjectView, c: ObjectView) -> bool | None:
    """a between b and c: on the floor segment b-c, and between them seen from the camera."""
    p = np.asarray(a.obj.center[:2], float)
    pb, pc = np.asarray(b.obj.center[:2], float), np.asarray(c.obj.center[:2], float)
    seg = pc - pb
    length = float(np.linalg.norm(seg))
    if length < 1e-6:
        return None
    t = float((p - pb) @ seg / length ** 2)
    perp = float(np.linalg.norm(p - (pb + t * seg)))
    lo, hi = sorted((b.x, c.x))
    if t < -0.05 or t > 1.05 or perp >= 0.6 * length:
        return False
    if (length >= 0.8 and 0.2 <= t <= 0.8 and perp <= min(0.25 * length, 0.6)
            and lo + 0.1 <= a.x <= hi - 0.1):
        return True
    return None


def pair_relation(name: str, a: ObjectView, b: ObjectView) -> bool | None:
    """Three-valued truth of ``a <name> b`` for the two-object relations."""
    if name == 'left_of':
        return left_of(a, b)
    if name == 'right_of':
        return left_of(b, a)
    if name == 'in_front_of':
        return in_front_of(a, b)
    if name == 'behind':
        return in_front_of(b, a)
    if name == 'next_to':
        return next_to(a, b)
    raise KeyError(f'not a pair relation: {name!r}; known: {", ".join(PAIR_RELATIONS)}')


def unique_name(view: ObjectView, views: list[ObjectView]) -> str | None:
    """'the table' or 'the red table' when that names exactly one object, else None."""
    cat = view.obj.category
    same = [v for v in views if v.obj.category == cat]
    if len(same) == 1:
        return f'the {display_name(cat)}'
    if sum(v.obj.color_name == view.obj.color_name for v in same) == 1:
        return f'the {view.obj.color_name} {display_name(cat)}'
    return None


def _unique(target: ObjectView, others: list[ObjectView], test) -> bool:
    return test(target) is True and all(test(o) is False for o in others)


def _unary_expressions(target: ObjectView, same: list[ObjectView], word: str) -> list[Expression]:
    """nearest / farthest / largest / smallest among the target's category."""
    if not same:
        return []
    out = []
    if all(o.dist - target.dist >= EXTREME_MARGIN and o.z - target.z >= EXTREME_MARGIN * 0.75
           for o in same):
        out.append(Expression(f'the nearest {word}', target.id, 'nearest'))
    if all(target.dist - o.dist >= EXTREME_MARGIN and target.z - o.z >= EXTREME_MARGIN * 0.75
           for o in same):
        out.append(Expression(f'the farthest {word}', target.id, 'farthest'))
    if all(target.volume >= VOLUME_RATIO * o.volume for o in same):
        out.append(Expression(f'the largest {word}', target.id, 'largest'))
    if all(o.volume >= VOLUME_RATIO * target.volume for o in same):
        out.append(Expression(f'the smallest {word}', target.id, 'smallest'))
    return out


def _clearly_left(a: ObjectView, b: ObjectView) -> bool:
    """a clearly left of b for ranking (x and image bearing agree, with a margin)."""
    return b.x - a.x >= ORDINAL_GAP and b.bearing - a.bearing >= BEARING_TRUE


def _ordinal_expressions(target: ObjectView, same: list[ObjectView],
                         word: str) -> list[Expression]:
    """'the second mug from the left' when the target's rank among 3+ of its kind is clear."""
    if len(same) < 2:
        return []
    if not all(_clearly_left(o, target) or _clearly_left(target, o) for o in same):
        return []
    left_rank = sum(_clearly_left(o, target) for o in same)
    out = []
    for rank, side in ((left_rank, 'left'), (len(same) - left_rank, 'right')):
        if rank == 0:
            out.append(Expression(f'the {side}most {word}', target.id, 'ordinal'))
        elif rank < len(ORDINALS):
            out.append(Expression(f'the {ORDINALS[rank]} {word} from the {side}', target.id,
                                  'ordinal'))
    return out


def candidate_expressions(views: list[ObjectView]) -> list[tuple[Expression, int]]:
    """Every unambiguous expression, each with its count of same-category distractors."""
    out: list[tuple[Expression, int]] = []
    names = {v.id: unique_name(v, views) for v in views}
    for target in views:
        cat = target.obj.category
        word = display_name(cat)
        same = [v for v in views if v.obj.category == cat and v.id != target.id]
        n_same = len(same)

        # attribute: the red mug
        if n_same and all(o.obj.color_name != target.obj.color_name for o in same):
            out.append((Expression(f'the {target.obj.color_name} {word}', target.id, 'color'),
                        n_same))
        out.extend((e, n_same) for e in _unary_expressions(target, same, word))
        out.extend((e, n_same) for e in _ordinal_expressions(target, same, word))
        # relations to one landmark
        for land in views:
            if land.id == target.id or names[land.id] is None:
                continue
            others = [o for o in same if o.id != land.id]
            for rel in PAIR_RELATIONS:
                if _unique(target, others, lambda o, r=rel, lm=land: pair_relation(r, o, lm)):
                    text = f'the {word} {PHRASES[rel]} {names[land.id]}'
                    out.append((Expression(text, target.id, rel, [land.id]), len(others)))
        # between two landmarks
        for b, c in itertools.combinations(views, 2):
            if target.id in (b.id, c.id) or names[b.id] is None or names[c.id] is None:
                continue
            others = [o for o in same if o.id not in (b.id, c.id)]
            if _unique(target, others, lambda o, b=b, c=c: between(o, b, c)):
                text = f'the {word} between {names[b.id]} and {names[c.id]}'
                out.append((Expression(text, target.id, 'between', [b.id, c.id]), len(others)))
    return out


def select_expressions(candidates: list[tuple[Expression, int]], rng: np.random.Generator,
                       limit: int) -> list[Expression]:
    """Up to ``limit`` expressions, spread over relations, those with distractors first."""
    by_rel: dict[str, list[tuple[Expression, int]]] = {}
    for expr, n in candidates:
        by_rel.setdefault(expr.relation, []).append((expr, n))
    queues = []
    for rel in RELATIONS:
        items = by_rel.get(rel, [])
        order = rng.permutation(len(items)) if items else []
        shuffled = [items[i] for i in order]
        shuffled.sort(key=lambda item: item[1] == 0)  # stable: distractor cases first
        queues.append([e for e, _ in shuffled])
    chosen: list[Expression] = []
    seen_text: set[str] = set()
    while len(chosen) < limit and any(queues):
        for q in queues:
            while q and q[0].text in seen_text:
                q.pop(0)
            if q and len(chosen) < limit:
                expr = q.pop(0)
                seen_text.add(expr.text)
                chosen.append(expr)
    return chosen


def vsr_captions(views: list[ObjectView], rng: np.random.Generator,
                 limit: int) -> list[VsrCaption]:
    """Balanced true/false captions "the mug is left of the box" over clearly-judged pairs."""
    names = {v.id: unique_name(v, views) for v in views}
    true_c, false_c = [], []
    for a, b in itertools.permutations(views, 2):
        if names[a.id] is None or names[b.id] is None:
            continue
        for rel in PAIR_RELATIONS:
            label = pair_relation(rel, a, b)
            if label is None:
                continue
            cap = VsrCaption(f'{names[a.id]} is {PHRASES[rel]} {names[b.id]}', label, rel,
                             a.id, b.id)
            (true_c if label else false_c).append(cap)
    n = min(len(true_c), len(false_c), limit // 2)
    picked = [true_c[i] for i in rng.permutation(len(true_c))[:n]] + \
        [false_c[i] for i in rng.permutation(len(false_c))[:n]]
    return [picked[i] for i in rng.permutation(len(picked))]
