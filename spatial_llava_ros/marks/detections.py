"""External detections (any detector's boxes or masks) as mark proposals.

The node turns a vision_msgs/Detection2DArray into plain arrays; the core takes
those. A box says where an object is but not which pixels: with depth, the box is
cut down to the depth layer of the object at its centre (floor and wall planes
excluded, depth-continuous with the centre); without depth the box itself is the
mask. A mask from the detector is trusted, minus pixels whose depth is far from
the mask's median (background bleeding through at its edges).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from spatial_llava_ros.errors import InputError
from spatial_llava_ros.marks.proposals import Proposal, ProposalResult, register

if TYPE_CHECKING:
    from spatial_llava_ros.marks.config import MarkerConfig
    from spatial_llava_ros.marks.inputs import FrameInput


@dataclass
class Detection:
    """One detector output: a box (x0, y0, x1, y1; x1, y1 exclusive) and/or an (H, W) mask."""

    box: tuple[float, float, float, float] | None = None
    mask: np.ndarray | None = None
    label: str | None = None
    score: float = 1.0


def _one(item, shape: tuple[int, int], index: int) -> Detection:
    h, w = shape
    if isinstance(item, Detection):
        det = Detection(item.box, item.mask, item.label, item.score)
    elif isinstance(item, dict):
        unknown = set(item) - {'box', 'mask', 'label', 'score'}
        if unknown:
            raise InputError(f'detection {index}: unknown keys {sorted(unknown)}')
        det = Detection(item.get('box'), item.get('mask'), item.get('label'),
                        float(item.get('score', 1.0)))
    else:
        arr = np.asarray(item)
        if arr.ndim == 2:
            det = Detection(mask=arr)
        elif arr.ndim == 1 and arr.size == 4:
            det = Detection(box=tuple(float(v) for v in arr))
        else:
            raise InputError(f'detection {index}: expected a box (x0, y0, x1, y1) or an '
                             f'(H, W) mask, got shape {arr.shape}')
    if det.mask is not None:
        mask = np.asarray(det.mask)
        if mask.shape != (h, w):
            raise InputError(f'detection {index}: mask has shape {mask.shape} but the image '
                             f'is {w}x{h} (needs ({h}, {w}))')
        det.mask = mask.astype(bool)
    if det.box is not None:
        box = np.asarray(det.box, dtype=np.float64).ravel()
        if box.size != 4 or not np.isfinite(box).all():
            raise InputError(f'detection {index}: box must be 4 finite numbers, got {det.box}')
        x0, y0, x1, y1 = box
        if x1 <= x0 or y1 <= y0:
            raise InputError(f'detection {index}: box ({x0}, {y0}, {x1}, {y1}) has x1 <= x0 '
                             f'or y1 <= y0')
        cx0, cy0 = int(np.clip(np.floor(x0), 0, w)), int(np.clip(np.floor(y0), 0, h))
        cx1, cy1 = int(np.clip(np.ceil(x1), 0, w)), int(np.clip(np.ceil(y1), 0, h))
        if cx1 <= cx0 or cy1 <= cy0:
            raise InputError(f'detection {index}: box ({x0}, {y0}, {x1}, {y1}) lies outside '
                             f'the {w}x{h} image')
        det.box = (cx0, cy0, cx1, cy1)
    if det.box is None and det.mask is None:
        raise InputError(f'detection {index}: needs a box or a mask')
    if not np.isfinite(det.score):
        raise InputError(f'detection {index}: score must be finite, got {det.score}')
    return det


def normalize_detections(detections, shape: tuple[int, int]) -> list[Detection]:
    """Boxes, masks, dicts or ``Detection`` objects -> validated ``Detection`` list.

    Accepts a list of items, an (N, 4) box array or an (N, H, W) mask array.
    """
    if isinstance(detections, np.ndarray):
        if detections.ndim == 2 and detections.shape[1] == 4:
            detections = list(detections)
        elif detections.ndim == 3:
            detections = list(detections)
        elif detections.size == 0:
            detections = []
        else:
            raise InputError(f'detections array must be (N, 4) boxes or (N, H, W) masks, got '
                             f'{detections.shape}')
    if isinstance(detections, (str, bytes)) or not isinstance(detections, Sequence):
        raise InputError(f'detections must be a list or array, got {type(detections).__name__}')
    return [_one(item, shape, i) for i, item in enumerate(detections)]


def refine_box(box: tuple[int, int, int, int], depth: np.ndarray,
               background: np.ndarray | None, jump_rel: float = 0.04,
               jump_abs: float = 0.04) -> np.ndarray | None:
    """Pixels of ``box`` on the object's depth layer; None when the box has no valid depth."""
    x0, y0, x1, y1 = box
    d = depth[y0:y1, x0:x1]
    valid = np.isfinite(d)
    if background is not None:
        valid &= ~background[y0:y1, x0:x1]
    if valid.sum() < 4:
        return None
    bh, bw = d.shape
    core = np.zeros_like(valid)
    core[bh // 4:bh - bh // 4 or bh, bw // 4:bw - bw // 4 or bw] = True
    seeds = valid & core
    if not seeds.any():
        seeds = valid
    z = np.where(valid, d, 0.0).astype(np.float32)
    d0 = float(np.median(d[seeds]))
    jump = jump_abs + jump_rel * z
    # depth-continuous region: no link across a neighbour jump
    ok = valid.copy()
    # only between two pixels with depth: a removed floor pixel is no depth edge
    gx = (np.abs(np.diff(z, axis=1)) > jump[:, 1:]) & valid[:, 1:] & valid[:, :-1]
    gy = (np.abs(np.diff(z, axis=0)) > jump[1:, :]) & valid[1:, :] & valid[:-1, :]
    far_x = np.diff(z, axis=1) > 0
    far_y = np.diff(z, axis=0) > 0
    ok[:, 1:] &= ~(gx & far_x)
    ok[:, :-1] &= ~(gx & ~far_x)
    ok[1:, :] &= ~(gy & far_y)
    ok[:-1, :] &= ~(gy & ~far_y)
    n, lab = cv2.connectedComponents(ok.view(np.uint8), connectivity=4)
    if n <= 1:
        return None
    near = seeds & ok & (np.abs(z - d0) < jump)
    votes = np.bincount(lab[near], minlength=n) if near.any() else \
        np.bincount(lab[seeds & ok], minlength=n)
    votes[0] = 0
    if votes.max() == 0:
        return None
    sub = lab == int(np.argmax(votes))
    out = np.zeros(depth.shape, bool)
    out[y0:y1, x0:x1] = sub
    return out


def refine_mask(mask: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """Drop mask pixels whose depth is an outlier (> 3 MAD + 5 cm from the median)."""
    vals = depth[mask]
    vals = vals[np.isfinite(vals)]
    if vals.size < 4:
        return mask
    med = float(np.median(vals))
    mad = float(np.median(np.abs(vals - med)))
    with np.errstate(invalid='ignore'):
        far = np.abs(depth - med) > 3.0 * 1.4826 * mad + 0.05
    out = mask & ~far  # NaN depth is kept: no evidence against it
    return out if out.sum() >= 0.3 * mask.sum() else mask


@register('detections')
class DetectionProposals:
    """Masks from an external detector, refined with depth where there is depth."""

    name = 'detections'

    def __init__(self, config: MarkerConfig) -> None:
        self.config = config

    def propose(self, frame: FrameInput,
                detections: list[Detection] | None = None) -> ProposalResult:
        if detections is None:
            raise InputError("proposals='detections' needs detections (boxes and/or masks)")
        notes: list[str] = []
        if not detections:
            notes.append('the detector reported no objects')
        background = None
        has_depth = frame.depth is not None and np.isfinite(frame.depth).any()
        if has_depth and any(d.mask is None for d in detections):
            from spatial_llava_ros.marks.depth_segment import segment_depth

            seg = segment_depth(frame.depth, frame.intrinsics, self.config.depth_params,
                                frame.rgb)
            s = self.config.depth_params.stride
            h, w = frame.depth.shape
            background = np.repeat(np.repeat(seg.background, s, 0), s, 1)[:h, :w]
        out = []
        unrefined = 0
        for det in detections:
            if det.mask is not None:
                mask = refine_mask(det.mask, frame.depth) if has_depth else det.mask
            else:
                mask = refine_box(det.box, frame.depth, background) if has_depth else None
                if mask is None:
                    unrefined += 1
                    x0, y0, x1, y1 = det.box
                    mask = np.zeros(frame.rgb.shape[:2], bool)
                    mask[y0:y1, x0:x1] = True
            out.append(Proposal(mask, det.score, det.label))
        if unrefined and has_depth:
            notes.append(f'{unrefined} box(es) had no valid depth: the box is the mask')
        return ProposalResult(out, notes)
