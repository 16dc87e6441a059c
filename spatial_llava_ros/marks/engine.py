"""The marks engine: one frame in, a ``MarkedFrame`` out.

validate -> propose (depth | color | detections | sam) -> filter and resolve
overlaps -> 3D centroids -> ids (tracked across calls) -> anchors -> drawing.
"""

from __future__ import annotations

import numpy as np

from spatial_llava_ros.camera_types import CameraIntrinsics
from spatial_llava_ros.geometry.camera import masked_centroid
from spatial_llava_ros.marks.config import MarkerConfig
from spatial_llava_ros.marks.detections import normalize_detections
from spatial_llava_ros.marks.filtering import filter_proposals, mask_box
from spatial_llava_ros.marks.inputs import prepare
from spatial_llava_ros.marks.placement import label_style, layout_labels
from spatial_llava_ros.marks.proposals import make_source
from spatial_llava_ros.marks.render import draw_marks
from spatial_llava_ros.marks.tracker import MarkTracker
from spatial_llava_ros.marks.types import Mark, MarkedFrame

# MarkerConfig lives in config.py; re-exported here for ``from ...engine import MarkerConfig``
__all__ = ['MarkEngine', 'MarkerConfig', 'mark_frame']


class MarkEngine:
    """Marks frames; ids stay with objects across consecutive ``process`` calls."""

    def __init__(self, config: MarkerConfig | None = None) -> None:
        self.config = config or MarkerConfig()
        self.source = make_source(self.config.proposals, self.config)
        self._fallback = None
        self.tracker = MarkTracker(self.config.id_reuse_timeout_s, self.config.track_min_iou,
                                   self.config.track_max_distance_m)

    def reset(self) -> None:
        """Forget the tracks: the next frame is numbered from 1 again."""
        self.tracker.reset()

    def _propose(self, frame, dets):
        cfg = self.config
        if cfg.proposals == 'depth' and cfg.fallback_to_color and \
                (frame.depth is None or not np.isfinite(frame.depth).any()):
            if self._fallback is None:
                self._fallback = make_source('color', cfg)
            reason = 'no depth image' if frame.depth is None else 'no valid depth pixel'
            result = self._fallback.propose(frame, dets)
            result.notes.insert(0, f'{reason}: used colour proposals instead of depth')
            return result, True
        return self.source.propose(frame, dets), False

    def process(self, rgb: np.ndarray, depth: np.ndarray | None = None,
                intrinsics: CameraIntrinsics | None = None, detections=None,
                stamp_ns: int = 0, rgb_encoding: str = 'rgb8',
                depth_encoding: str | None = None) -> MarkedFrame:
        """Mark one frame. ``detections``: boxes (x0, y0, x1, y1) and/or bool masks, see
        ``marks.detections.normalize_detections``."""
        cfg = self.config
        frame = prepare(rgb, depth, intrinsics, rgb_encoding, depth_encoding)
        h, w = frame.rgb.shape[:2]
        dets = normalize_detections(detections, (h, w)) if detections is not None else None
        result, fell_back = self._propose(frame, dets)
        notes = frame.notes + result.notes
        use_depth = frame.depth if cfg.proposals in ('depth',) and not fell_back else None
        kept, dropped = filter_proposals(
            result.proposals, (h, w), use_depth, min_area=cfg.min_area,
            max_area_fraction=cfg.max_area_fraction, border_margin=cfg.border_margin,
            border_max_fraction=cfg.border_max_fraction,
            min_depth_fraction=cfg.min_depth_fraction, duplicate_iou=cfg.duplicate_iou,
            overlap_drop=cfg.overlap_drop, max_marks=cfg.max_marks)
        if result.proposals and not kept:
            why = ', '.join(f'{v} {k}' for k, v in dropped.items() if v)
            notes.append(f'all {len(result.proposals)} proposals were filtered out ({why})')
        elif dropped['cap']:
            notes.append(f'{dropped["cap"]} proposals over max_marks={cfg.max_marks} dropped')
        boxes = [p.box if p.box is not None else mask_box(p.mask) for p in kept]
        centroids = [self._centroid(p.mask, b, frame) for p, b in zip(kept, boxes)]
        ids = self.tracker.assign([p.mask for p in kept], boxes, centroids, stamp_ns)
        return self._finish(frame, kept, boxes, centroids, ids, stamp_ns, notes)

    def _centroid(self, mask: np.ndarray, box: tuple[int, int, int, int],
                  frame) -> np.ndarray | None:
        if frame.depth is None or frame.intrinsics is None:
            return None
        x0, y0, x1, y1 = box
        k = frame.intrinsics
        # the same maths on the box crop: shift the principal point, 100x less work
        crop_k = CameraIntrinsics(k.fx, k.fy, k.cx - x0, k.cy - y0, x1 - x0, y1 - y0)
        c = masked_centroid(mask[y0:y1, x0:x1], frame.depth[y0:y1, x0:x1], crop_k,
                            trim=self.config.centroid_trim)
        return None if c is None else np.asarray(c, dtype=np.float64)

    def _finish(self, frame, kept, boxes, centroids, ids, stamp_ns, notes) -> MarkedFrame:
        cfg = self.config
        h, w = frame.rgb.shape[:2]
        order = sorted(range(len(kept)), key=lambda i: ids[i])
        style = label_style(h, w, cfg.text_height_336)
        layout = layout_labels([kept[i].mask for i in order], [boxes[i] for i in order],
                               [str(ids[i]) for i in order], style, cfg.label_placement)
        marks = []
        dropped = []
        for k, i in enumerate(order):
            if layout.anchors[k] is None:
                dropped.append(ids[i])
                continue
            p = kept[i]
            marks.append(Mark(mark_id=ids[i], mask=p.mask, box=boxes[i],
                              anchor=layout.anchors[k],
                              pixel_count=int(p.mask[boxes[i][1]:boxes[i][3],
                                                     boxes[i][0]:boxes[i][2]].sum()),
                              centroid=centroids[i],
                              score=float(p.score), label=p.label,
                              label_rect=layout.rects[k], leader=layout.leaders[k]))
        if dropped:
            notes.append(f'{len(dropped)} mark(s) dropped, no free place for their number '
                         f'(labels never touch or hide an object): {dropped}')
        if not marks and not notes:
            notes.append('no object proposals in this frame')
        image = draw_marks(frame.rgb, marks, cfg.style, style, cfg.tint_alpha)
        return MarkedFrame(image=image, rgb=frame.rgb, marks=marks, depth=frame.depth,
                           intrinsics=frame.intrinsics, stamp_ns=int(stamp_ns), notes=notes)


def mark_frame(rgb: np.ndarray, depth: np.ndarray | None = None,
               intrinsics: CameraIntrinsics | None = None, detections=None,
               stamp_ns: int = 0, rgb_encoding: str = 'rgb8', depth_encoding: str | None = None,
               **config_kwargs) -> MarkedFrame:
    """Mark a single frame (no tracking: ids 1..N in reading order)."""
    engine = MarkEngine(MarkerConfig.from_kwargs(**config_kwargs))
    return engine.process(rgb, depth, intrinsics, detections=detections, stamp_ns=stamp_ns,
                          rgb_encoding=rgb_encoding, depth_encoding=depth_encoding)
