"""Which mark stands for which ground-truth object: best-IoU matching of masks."""

from __future__ import annotations

import numpy as np

from spatial_llava_ros.errors import InputError


def match_marks(mark_masks: dict[int, np.ndarray], instance_mask: np.ndarray,
                min_iou: float = 0.3) -> dict[int, tuple[int, float]]:
    """Map each GT instance id to ``(mark_id, iou)`` of the mark whose mask overlaps it best.

    Instances whose best IoU is below ``min_iou`` are left out: a query about them has no
    mark to answer with and counts as a failure, reported as ``unmatched``. One mark may
    serve one instance only (greedy by IoU), so a merged mask cannot score two objects.
    """
    if instance_mask.ndim != 2:
        raise InputError(f'instance mask must be 2-D, got shape {instance_mask.shape}')
    ids = [int(i) for i in np.unique(instance_mask) if i != 0]
    candidates: list[tuple[float, int, int]] = []
    inst_area = {i: int((instance_mask == i).sum()) for i in ids}
    for mark_id, mask in mark_masks.items():
        if mask.shape != instance_mask.shape:
            raise InputError(f'mark {mark_id} mask shape {mask.shape} != instance mask '
                             f'{instance_mask.shape}')
        hit = instance_mask[mask]
        if hit.size == 0:
            continue
        counts = np.bincount(hit, minlength=1)
        area = int(mask.sum())
        for inst in np.nonzero(counts)[0]:
            if inst == 0:
                continue
            inter = int(counts[inst])
            iou = inter / (area + inst_area[int(inst)] - inter)
            if iou >= min_iou:
                candidates.append((iou, int(mark_id), int(inst)))
    result: dict[int, tuple[int, float]] = {}
    used: set[int] = set()
    for iou, mark_id, inst in sorted(candidates, reverse=True):
        if inst in result or mark_id in used:
            continue
        result[inst] = (mark_id, float(iou))
        used.add(mark_id)
    return result
