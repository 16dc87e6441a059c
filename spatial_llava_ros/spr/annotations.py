"""What SPR scores descriptions against: one marked frame's annotated objects and marks.

Built from a synthetic scene + its marks (or any SUN-Spot-style annotation with instance
masks), then kept as plain JSON so that scoring never needs the images again. Localization
works on marks instead of the paper's boxes: ``mark_iou[mark][instance]`` is the mask IoU
of a drawn mark with an annotated object, so "the mug (mark 3)" is as well localized as
mark 3's mask covers that mug.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from spatial_llava_ros.errors import InputError


@dataclass
class AnnotatedObject:
    """One annotated object: category, colour, image box and 3D box (for relations)."""

    instance_id: int
    category: str
    color: str
    box: tuple[int, int, int, int]  # x_min, y_min, x_max, y_max (max exclusive), pixels
    center: tuple[float, float, float] | None = None  # world frame, metres
    size: tuple[float, float, float] | None = None
    yaw: float = 0.0
    mark_id: int | None = None  # the mark drawn on it (best mask IoU), None if unmarked

    def to_dict(self) -> dict:
        return {'instance_id': self.instance_id, 'category': self.category,
                'color': self.color, 'box': list(self.box),
                'center': None if self.center is None else [round(v, 4) for v in self.center],
                'size': None if self.size is None else [round(v, 4) for v in self.size],
                'yaw': round(self.yaw, 5), 'mark_id': self.mark_id}

    @classmethod
    def from_dict(cls, d: dict) -> AnnotatedObject:
        return cls(int(d['instance_id']), str(d['category']), str(d['color']),
                   tuple(int(v) for v in d['box']),
                   None if d.get('center') is None else tuple(float(v) for v in d['center']),
                   None if d.get('size') is None else tuple(float(v) for v in d['size']),
                   float(d.get('yaw', 0.0)),
                   None if d.get('mark_id') is None else int(d['mark_id']))


@dataclass
class SceneAnnotation:
    """Annotated objects + marks of one frame, everything scoring and refinement need."""

    scene_id: str
    width: int
    height: int
    objects: list[AnnotatedObject]
    mark_boxes: dict[int, tuple[int, int, int, int]]
    mark_iou: dict[int, dict[int, float]]  # mark id -> {instance id: mask IoU > 0}
    camera_pose: np.ndarray | None = None  # world_T_camera_optical, for spatial relations
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        ids = [o.instance_id for o in self.objects]
        if len(set(ids)) != len(ids):
            raise InputError(f'scene {self.scene_id}: duplicate instance ids {ids}')

    def object(self, instance_id: int) -> AnnotatedObject:
        for o in self.objects:
            if o.instance_id == instance_id:
                return o
        raise InputError(f'scene {self.scene_id}: no object {instance_id}; '
                         f'have {[o.instance_id for o in self.objects]}')

    @property
    def mark_ids(self) -> list[int]:
        return sorted(self.mark_boxes)

    def object_of_mark(self, mark_id: int) -> AnnotatedObject | None:
        """The annotated object a mark stands for (the one it was matched to)."""
        for o in self.objects:
            if o.mark_id == mark_id:
                return o
        return None

    def categories(self) -> list[str]:
        return sorted({o.category for o in self.objects})

    def to_dict(self) -> dict:
        return {'scene_id': self.scene_id, 'width': self.width, 'height': self.height,
                'objects': [o.to_dict() for o in self.objects],
                'mark_boxes': {str(k): list(v) for k, v in self.mark_boxes.items()},
                'mark_iou': {str(m): {str(i): round(v, 4) for i, v in row.items()}
                             for m, row in self.mark_iou.items()},
                'camera_pose': None if self.camera_pose is None
                else np.round(self.camera_pose, 6).tolist(),
                'extra': self.extra}

    @classmethod
    def from_dict(cls, d: dict) -> SceneAnnotation:
        try:
            return cls(str(d['scene_id']), int(d['width']), int(d['height']),
                       [AnnotatedObject.from_dict(o) for o in d['objects']],
                       {int(k): tuple(int(x) for x in v) for k, v in d['mark_boxes'].items()},
                       {int(m): {int(i): float(v) for i, v in row.items()}
                        for m, row in d['mark_iou'].items()},
                       None if d.get('camera_pose') is None
                       else np.asarray(d['camera_pose'], dtype=float),
                       dict(d.get('extra') or {}))
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f'bad scene annotation record: {exc}') from exc


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """x_min, y_min, x_max, y_max (max exclusive) of a non-empty mask, else (0, 0, 0, 0)."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return (0, 0, 0, 0)
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def mark_instance_iou(mark_masks: dict[int, np.ndarray],
                      instance_mask: np.ndarray) -> dict[int, dict[int, float]]:
    """Mask IoU of every mark with every instance it overlaps."""
    ids, areas = np.unique(instance_mask, return_counts=True)
    area = {int(i): int(a) for i, a in zip(ids, areas) if i != 0}
    out: dict[int, dict[int, float]] = {}
    for mark_id, mask in mark_masks.items():
        if mask.shape != instance_mask.shape:
            raise InputError(f'mark {mark_id} mask {mask.shape} != instance mask '
                             f'{instance_mask.shape}')
        hit = instance_mask[mask]
        m_area = int(mask.sum())
        row: dict[int, float] = {}
        if hit.size:
            counts = np.bincount(hit.astype(np.int64))
            for inst in np.nonzero(counts)[0]:
                if inst == 0 or int(inst) not in area:
                    continue
                inter = int(counts[inst])
                row[int(inst)] = inter / (m_area + area[int(inst)] - inter)
        out[int(mark_id)] = row
    return out


def annotate(scene_id: str, objects, instance_mask: np.ndarray,
             mark_masks: dict[int, np.ndarray], marks_of: dict[int, int],
             camera_pose: np.ndarray | None = None) -> SceneAnnotation:
    """A SceneAnnotation from scene objects (``SceneObject``-like), masks and mark matching.

    ``marks_of`` maps instance ids to their mark (``evaluation.matching.match_marks``);
    objects that are not visible in ``instance_mask`` are left out.
    """
    if instance_mask.ndim != 2:
        raise InputError(f'instance mask must be 2-D, got shape {instance_mask.shape}')
    h, w = instance_mask.shape
    annotated = []
    for obj in objects:
        box = mask_box(instance_mask == obj.instance_id)
        if box[2] <= box[0]:
            continue
        center = np.asarray(obj.center, dtype=float).ravel()[:3]
        size = np.asarray(obj.size, dtype=float).ravel()[:3]
        has_3d = center.size == 3 and size.size == 3 and np.isfinite([*center, *size]).all()
        annotated.append(AnnotatedObject(
            int(obj.instance_id), str(obj.category), str(obj.color_name or ''), box,
            tuple(float(v) for v in center) if has_3d else None,  # real data may lack 3D
            tuple(float(v) for v in size) if has_3d else None, float(obj.yaw),
            marks_of.get(int(obj.instance_id))))
    return SceneAnnotation(
        str(scene_id), int(w), int(h), annotated,
        {int(m): mask_box(mk) for m, mk in mark_masks.items()},
        mark_instance_iou(mark_masks, instance_mask), camera_pose)
