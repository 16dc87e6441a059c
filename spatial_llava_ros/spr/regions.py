"""Query regions by region growing (SPR step 1).

As in the paper: start from a randomly chosen annotated object and keep merging the nearest
neighbouring object into the region until it holds more than four objects (``min_objects``
5). "Nearest" is measured in the image, as the paper's annotations are 2D boxes: the gap
between a candidate's box and the region's union box (0 when they overlap), ties broken by
the distance between box centres. Only objects that carry a mark take part, because a
description can only ground what is marked (the paper's boxes need no such filter).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from spatial_llava_ros.errors import InputError
from spatial_llava_ros.spr.annotations import AnnotatedObject, SceneAnnotation

Box = tuple[int, int, int, int]


@dataclass
class QueryRegion:
    """A grown region: its objects (growth order) and the union of their boxes."""

    scene_id: str
    region_id: int
    instance_ids: list[int]
    mark_ids: list[int]
    box: Box

    def to_dict(self) -> dict:
        return {'scene_id': self.scene_id, 'region_id': self.region_id,
                'instance_ids': self.instance_ids, 'mark_ids': self.mark_ids,
                'box': list(self.box)}

    @classmethod
    def from_dict(cls, d: dict) -> QueryRegion:
        return cls(str(d['scene_id']), int(d['region_id']),
                   [int(i) for i in d['instance_ids']], [int(m) for m in d['mark_ids']],
                   tuple(int(v) for v in d['box']))


def union_box(boxes: list[Box]) -> Box:
    return (min(b[0] for b in boxes), min(b[1] for b in boxes),
            max(b[2] for b in boxes), max(b[3] for b in boxes))


def box_gap(a: Box, b: Box) -> float:
    """Euclidean gap between two boxes, 0 when they touch or overlap."""
    dx = max(0, max(a[0], b[0]) - min(a[2], b[2]))
    dy = max(0, max(a[1], b[1]) - min(a[3], b[3]))
    return math.hypot(dx, dy)


def _centre(b: Box) -> tuple[float, float]:
    return (b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0


def grow_region(objects: list[AnnotatedObject], start_id: int, min_objects: int = 5) -> list[int]:
    """Instance ids of the region grown from ``start_id`` (growth order).

    Stops at ``min_objects`` objects or when no object is left.
    """
    by_id = {o.instance_id: o for o in objects}
    if start_id not in by_id:
        raise InputError(f'start object {start_id} not among {sorted(by_id)}')
    region = [start_id]
    while len(region) < min_objects and len(region) < len(objects):
        ubox = union_box([by_id[i].box for i in region])
        uc = _centre(ubox)
        best = min((o for o in objects if o.instance_id not in region),
                   key=lambda o: (box_gap(o.box, ubox),
                                  math.dist(_centre(o.box), uc), o.instance_id))
        region.append(best.instance_id)
    return region


def sample_regions(annotation: SceneAnnotation, n_regions: int, rng: np.random.Generator,
                   min_objects: int = 5, min_size: int = 3,
                   require_mark: bool = True) -> list[QueryRegion]:
    """Up to ``n_regions`` distinct regions, each grown from a different random start.

    Scenes with fewer than ``min_objects`` usable objects give regions of all of them, and
    none when even ``min_size`` are not there.
    """
    if n_regions < 1:
        raise InputError(f'n_regions must be >= 1, got {n_regions}')
    if min_objects < 1 or min_size < 1:
        raise InputError(f'min_objects {min_objects} and min_size {min_size} must be >= 1')
    usable = [o for o in annotation.objects if o.mark_id is not None or not require_mark]
    if len(usable) < min_size:
        return []
    starts = [int(i) for i in rng.permutation([o.instance_id for o in usable])]
    regions: list[QueryRegion] = []
    seen: set[frozenset[int]] = set()
    by_id = {o.instance_id: o for o in usable}
    for start in starts:
        ids = grow_region(usable, start, min_objects)
        key = frozenset(ids)
        if key in seen:
            continue
        seen.add(key)
        regions.append(QueryRegion(
            annotation.scene_id, len(regions), ids,
            [by_id[i].mark_id for i in ids if by_id[i].mark_id is not None],
            union_box([by_id[i].box for i in ids])))
        if len(regions) >= n_regions:
            break
    return regions
