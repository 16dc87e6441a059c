"""Colour-only proposals for cameras without depth.

Felzenszwalb-Huttenlocher graph segmentation (OpenCV ximgproc) over-segments on
purpose; adjacent segments are then merged, most similar first, while their mean
colours stay close. The distance weighs chroma fully and lightness partly, because
shading changes lightness across one object's faces while its hue stays the same.
Regions covering a large share of the image (floor, walls) are background.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np

from spatial_llava_ros.marks.params import ColorSegmentParams
from spatial_llava_ros.marks.proposals import Proposal, ProposalResult, register

if TYPE_CHECKING:
    from spatial_llava_ros.marks.config import MarkerConfig
    from spatial_llava_ros.marks.inputs import FrameInput




def graph_segments(rgb: np.ndarray, p: ColorSegmentParams) -> np.ndarray:
    """Raw graph segmentation labels (0..n-1) at working resolution."""
    h, w = rgb.shape[:2]
    sw, sh = max(1, int(round(w * p.scale))), max(1, int(round(h * p.scale)))
    small = cv2.resize(rgb, (sw, sh), interpolation=cv2.INTER_AREA) if (sw, sh) != (w, h) \
        else rgb
    seg = cv2.ximgproc.segmentation.createGraphSegmentation(p.sigma, p.k, p.min_size)
    return seg.processImage(np.ascontiguousarray(small[:, :, ::-1]))


def _find(parent: np.ndarray, i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def merge_segments(rgb_small: np.ndarray, labels: np.ndarray,
                   p: ColorSegmentParams) -> np.ndarray:
    """Merge adjacent segments of similar mean colour; returns labels 0..m-1."""
    n = int(labels.max()) + 1
    lab = cv2.cvtColor(rgb_small, cv2.COLOR_RGB2LAB).reshape(-1, 3).astype(np.float64)
    flat = labels.ravel()
    count = np.bincount(flat, minlength=n).astype(np.float64)
    sums = np.stack([np.bincount(flat, weights=lab[:, c], minlength=n) for c in range(3)], 1)
    pairs = []
    for a, b in ((labels[:, :-1], labels[:, 1:]), (labels[:-1, :], labels[1:, :])):
        diff = a != b
        lo = np.minimum(a[diff], b[diff]).astype(np.int64)
        hi = np.maximum(a[diff], b[diff]).astype(np.int64)
        pairs.append(lo * n + hi)
    if not pairs or not sum(x.size for x in pairs):
        return labels
    keys = np.unique(np.concatenate(pairs))
    ea, eb = keys // n, keys % n

    def dist(i: int, j: int) -> float:
        mi, mj = sums[i] / count[i], sums[j] / count[j]
        chroma = float(np.hypot(mi[1] - mj[1], mi[2] - mj[2]))
        return chroma + p.lightness_weight * abs(float(mi[0] - mj[0]))

    means = sums / count[:, None]
    d0 = np.hypot(means[ea, 1] - means[eb, 1], means[ea, 2] - means[eb, 2]) \
        + p.lightness_weight * np.abs(means[ea, 0] - means[eb, 0])
    parent = np.arange(n)
    for e in np.argsort(d0, kind='stable'):
        if d0[e] > p.merge_distance:
            break
        ra, rb = _find(parent, int(ea[e])), _find(parent, int(eb[e]))
        if ra == rb or dist(ra, rb) > p.merge_distance:
            continue
        parent[rb] = ra
        sums[ra] += sums[rb]
        count[ra] += count[rb]
    roots = np.array([_find(parent, i) for i in range(n)])
    _, dense = np.unique(roots, return_inverse=True)
    return dense[labels]


def segment_color(rgb: np.ndarray, p: ColorSegmentParams | None = None) -> np.ndarray:
    """Full-resolution region labels (1..m), 0 for background regions."""
    p = p or ColorSegmentParams()
    h, w = rgb.shape[:2]
    raw = graph_segments(rgb, p)
    sh, sw = raw.shape
    small = cv2.resize(rgb, (sw, sh), interpolation=cv2.INTER_AREA) if (sw, sh) != (w, h) \
        else rgb
    merged = merge_segments(small, raw, p)
    sizes = np.bincount(merged.ravel())
    keep = sizes <= p.max_region_fraction * merged.size
    relabel = np.where(keep, np.cumsum(keep), 0).astype(np.int32)
    out = relabel[merged]
    if (sw, sh) != (w, h):
        rows = np.minimum((np.arange(h) * sh) // h, sh - 1)
        cols = np.minimum((np.arange(w) * sw) // w, sw - 1)
        out = out[rows[:, None], cols[None, :]]
    return out


@register('color')
class ColorProposals:
    """Graph segmentation merged into object-sized regions; RGB only."""

    name = 'color'

    def __init__(self, config: MarkerConfig) -> None:
        self.params = config.color_params

    def propose(self, frame: FrameInput, detections: list | None = None) -> ProposalResult:
        from spatial_llava_ros.marks.depth_segment import labels_to_masks

        labels = segment_color(frame.rgb, self.params)
        masks = labels_to_masks(labels)
        notes = [] if masks else ['colour segmentation found only background-sized regions']
        return ProposalResult([Proposal(m, 1.0, box=b) for m, b in masks], notes)
