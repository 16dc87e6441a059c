"""From raw proposals to the set worth numbering: area, border, depth validity, overlap, cap.

Every pixel ends up in at most one mark, so a number and a mask always agree and
the resolver never has to choose between two masks for the same pixel.
"""

from __future__ import annotations

import numpy as np

from spatial_llava_ros.marks.proposals import Proposal


def _box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """x_min, y_min, x_max, y_max (max exclusive) of a non-empty mask; (0, 0, 0, 0) if empty."""
    box = _box(mask)
    return box if box is not None else (0, 0, 0, 0)


def tight_box(mask: np.ndarray, hint: tuple[int, int, int, int] | None = None
              ) -> tuple[int, int, int, int]:
    """Tight box of ``mask``, searched only inside ``hint`` (an enclosing box) when given."""
    if hint is None:
        return mask_box(mask)
    x0, y0, x1, y1 = hint
    b = _box(mask[y0:y1, x0:x1])
    return (0, 0, 0, 0) if b is None else (b[0] + x0, b[1] + y0, b[2] + x0, b[3] + y0)


def border_fraction(mask: np.ndarray, margin: int,
                    box: tuple[int, int, int, int] | None = None) -> float:
    """Share of the mask's pixels that lie within ``margin`` pixels of the image edge."""
    if margin <= 0:
        return 0.0
    h, w = mask.shape
    x0, y0, x1, y1 = box if box is not None else (0, 0, w, h)
    if x0 >= margin and y0 >= margin and x1 <= w - margin and y1 <= h - margin:
        return 0.0
    total = int(mask[y0:y1, x0:x1].sum())
    if total == 0:
        return 0.0
    inner = mask[margin:-margin, margin:-margin].sum() if min(mask.shape) > 2 * margin else 0
    return float(total - int(inner)) / total


def valid_depth_fraction(mask: np.ndarray, depth: np.ndarray,
                         box: tuple[int, int, int, int] | None = None) -> float:
    if box is not None:
        x0, y0, x1, y1 = box
        mask, depth = mask[y0:y1, x0:x1], depth[y0:y1, x0:x1]
    total = int(mask.sum())
    return float(np.isfinite(depth[mask]).sum()) / total if total else 0.0


def _overlap(a_box, b_box) -> bool:
    return a_box[0] < b_box[2] and b_box[0] < a_box[2] and a_box[1] < b_box[3] \
        and b_box[1] < a_box[3]


def filter_proposals(proposals: list[Proposal], shape: tuple[int, int],
                     depth: np.ndarray | None, *, min_area: int, max_area_fraction: float,
                     border_margin: int, border_max_fraction: float,
                     min_depth_fraction: float, duplicate_iou: float, overlap_drop: float,
                     max_marks: int) -> tuple[list[Proposal], dict[str, int]]:
    """Keep proposals worth a number; returns them and a count of what was dropped, by reason.

    Near-duplicates (IoU >= ``duplicate_iou``) keep the higher score. Then, smallest
    first, each mask claims its pixels: an object on a table keeps its pixels and the
    table gets the rest. A mask left with less than ``1 - overlap_drop`` of itself or
    fewer than ``min_area`` pixels is dropped. At most ``max_marks`` survive, by score, then
    by how much they look like a whole object (``ranking.objectness``), then size.
    """
    h, w = shape
    max_area = max_area_fraction * h * w
    dropped = {'small': 0, 'large': 0, 'border': 0, 'no_depth': 0, 'duplicate': 0,
               'occluded': 0, 'cap': 0}
    kept: list[tuple[Proposal, int, tuple[int, int, int, int]]] = []
    for prop in proposals:
        mask = np.asarray(prop.mask, dtype=bool)
        if mask.shape != (h, w):
            continue
        box = tight_box(mask, prop.box)
        area = int(mask[box[1]:box[3], box[0]:box[2]].sum())
        if area < min_area:
            dropped['small'] += 1
            continue
        if area > max_area:
            dropped['large'] += 1
            continue
        if border_fraction(mask, border_margin, box) > border_max_fraction:
            dropped['border'] += 1
            continue
        if depth is not None and min_depth_fraction > 0 \
                and valid_depth_fraction(mask, depth, box) < min_depth_fraction:
            dropped['no_depth'] += 1
            continue
        kept.append((Proposal(mask, float(prop.score), prop.label, box), area, box))

    # near-duplicates: highest score first, larger first on ties
    kept.sort(key=lambda t: (-t[0].score, -t[1]))
    unique: list[tuple[Proposal, int, tuple[int, int, int, int]]] = []
    for prop, area, box in kept:
        dup = False
        for other, o_area, o_box in unique:
            if not _overlap(box, o_box):
                continue
            ix0, iy0 = max(box[0], o_box[0]), max(box[1], o_box[1])
            ix1, iy1 = min(box[2], o_box[2]), min(box[3], o_box[3])
            inter = int(np.logical_and(prop.mask[iy0:iy1, ix0:ix1],
                                       other.mask[iy0:iy1, ix0:ix1]).sum())
            if inter / float(area + o_area - inter) >= duplicate_iou:
                dup = True
                break
        if dup:
            dropped['duplicate'] += 1
        else:
            unique.append((prop, area, box))

    # smallest first claims pixels
    unique.sort(key=lambda t: t[1])
    claimed = np.zeros((h, w), dtype=bool)
    resolved: list[Proposal] = []
    for prop, area, box in unique:
        x0, y0, x1, y1 = box
        sub = prop.mask[y0:y1, x0:x1]
        taken = int(np.logical_and(sub, claimed[y0:y1, x0:x1]).sum())
        if taken:
            if taken > overlap_drop * area or area - taken < min_area:
                dropped['occluded'] += 1
                continue
            mask = prop.mask.copy()
            mask[y0:y1, x0:x1] &= ~claimed[y0:y1, x0:x1]
            box = tight_box(mask, box)
            x0, y0, x1, y1 = box
            prop = Proposal(mask, prop.score, prop.label, box)
        claimed[y0:y1, x0:x1] |= prop.mask[y0:y1, x0:x1]
        resolved.append(prop)

    if len(resolved) > max_marks:  # objects before fragments (ranking.py), then by size
        from spatial_llava_ros.marks.ranking import objectness

        rank = {id(p): objectness(p.mask, p.box, depth, border_margin) for p in resolved}
        order = sorted(resolved, key=lambda p: (-p.score, -rank[id(p)], -int(p.mask.sum())))
        dropped['cap'] = len(resolved) - max_marks
        keep = {id(p) for p in order[:max_marks]}
        resolved = [p for p in resolved if id(p) in keep]
    return resolved, dropped
