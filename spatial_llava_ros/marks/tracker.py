"""Keeps a mark's number on the same object while the camera moves.

Masks of consecutive frames are matched by mask IoU (on a coarse grid, cheap) and,
where depth gives one, by 3D centroid distance; the optimal one-to-one assignment
comes from the Hungarian algorithm. An object that is not matched gets the smallest
free number. A number stays reserved while its object is out of sight for up to
``reuse_timeout_s`` (it can come back and keep it) and is only then given away.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

GRID = 4  # IoU on every 4th pixel: plenty for object-sized masks, 16x less work


@dataclass
class Track:
    mark_id: int
    mask: np.ndarray  # coarse (H/GRID, W/GRID) bool
    box: tuple[int, int, int, int]  # coarse
    centroid: np.ndarray | None
    last_seen_s: float
    hits: int = 1


def _coarse(mask: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(mask[GRID // 2::GRID, GRID // 2::GRID])


def _coarse_box(box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    return box[0] // GRID, box[1] // GRID, -(-box[2] // GRID), -(-box[3] // GRID)


def _iou(a: np.ndarray, a_box: tuple, b: np.ndarray, b_box: tuple,
         shift: tuple[int, int] = (0, 0)) -> float:
    """IoU of coarse masks ``a`` (moved by ``shift`` = (dx, dy) cells) and ``b``."""
    dx, dy = shift
    x0, y0 = max(a_box[0] + dx, b_box[0]), max(a_box[1] + dy, b_box[1])
    x1, y1 = min(a_box[2] + dx, b_box[2]), min(a_box[3] + dy, b_box[3])
    if x1 <= x0 or y1 <= y0:
        return 0.0
    inter = int(np.logical_and(a[y0 - dy:y1 - dy, x0 - dx:x1 - dx], b[y0:y1, x0:x1]).sum())
    if inter == 0:
        return 0.0
    union = int(a.sum()) + int(b.sum()) - inter
    return inter / union if union else 0.0


def _centre(box: tuple) -> np.ndarray:
    return np.array([(box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0])


class MarkTracker:
    """Assigns mark ids to each frame's masks, stable across consecutive frames."""

    def __init__(self, reuse_timeout_s: float = 5.0, min_iou: float = 0.2,
                 max_centroid_distance_m: float = 0.25) -> None:
        self.reuse_timeout_s = float(reuse_timeout_s)
        self.min_iou = float(min_iou)
        self.max_dist = float(max_centroid_distance_m)
        self.tracks: dict[int, Track] = {}
        self._last_s: float | None = None

    def reset(self) -> None:
        self.tracks.clear()
        self._last_s = None

    def _now(self, stamp_ns: int) -> float:
        now = stamp_ns * 1e-9 if stamp_ns > 0 else time.monotonic()
        if self._last_s is not None and now < self._last_s:
            # time went backwards (bag looped, clock reset): old tracks mean nothing now
            self.reset()
        self._last_s = now
        return now

    def _similarity(self, track: Track, mask: np.ndarray, box: tuple,
                    centroid: np.ndarray | None, shift: tuple[int, int] = (0, 0)) -> float:
        """IoU plus up to 0.5 for a close 3D centroid; -1 when the pair cannot match."""
        iou = _iou(track.mask, track.box, mask, box, shift)
        close = 0.0
        if track.centroid is not None and centroid is not None:
            d = float(np.linalg.norm(track.centroid - centroid))
            if d > 2 * self.max_dist and iou < 0.5:
                return -1.0  # a different object at the same place in the image
            close = max(0.0, 1.0 - d / self.max_dist)
        if iou >= self.min_iou or close > 0.0:
            return iou + 0.5 * close
        return -1.0

    def assign(self, masks: list[np.ndarray], boxes: list[tuple[int, int, int, int]],
               centroids: list[np.ndarray | None], stamp_ns: int = 0) -> list[int]:
        """One id per mask (same order); updates the tracks."""
        now = self._now(stamp_ns)
        for mid in [m for m, t in self.tracks.items()
                    if now - t.last_seen_s > self.reuse_timeout_s]:
            del self.tracks[mid]
        coarse = [_coarse(m) for m in masks]
        cboxes = [_coarse_box(b) for b in boxes]
        track_ids = list(self.tracks)
        ids: list[int | None] = [None] * len(masks)
        if track_ids and masks:
            def solve(shift: tuple[int, int]) -> tuple[np.ndarray, list[tuple[int, int]]]:
                sim = np.full((len(track_ids), len(masks)), -1.0)
                for i, tid in enumerate(track_ids):
                    for j in range(len(masks)):
                        sim[i, j] = self._similarity(self.tracks[tid], coarse[j], cboxes[j],
                                                     centroids[j], shift)
                rows, cols = linear_sum_assignment(-np.where(sim < 0, -10.0, sim))
                return sim, [(r, c) for r, c in zip(rows, cols) if sim[r, c] >= 0]

            sim, pairs = solve((0, 0))
            # the camera moved: every mask shifted the same way; re-match with the median
            # shift of the confident pairs so that small objects that moved further than
            # their own size still find their track
            moves = [_centre(cboxes[c]) - _centre(self.tracks[track_ids[r]].box)
                     for r, c in pairs if sim[r, c] >= 0.3]
            if moves:
                dx, dy = (int(round(v)) for v in np.median(np.array(moves), axis=0))
                if dx or dy:
                    sim2, pairs2 = solve((dx, dy))
                    if sum(sim2[r, c] for r, c in pairs2) > sum(sim[r, c] for r, c in pairs):
                        pairs = pairs2
            for r, c in pairs:
                ids[c] = track_ids[r]
        used = set(self.tracks)
        fresh = sorted((j for j in range(len(masks)) if ids[j] is None),
                       key=lambda j: ((boxes[j][1] + boxes[j][3]) // 2,
                                      (boxes[j][0] + boxes[j][2]) // 2))
        next_id = 1
        for j in fresh:
            while next_id in used:
                next_id += 1
            ids[j] = next_id
            used.add(next_id)
        for j, mid in enumerate(ids):
            old = self.tracks.get(mid)
            self.tracks[mid] = Track(mid, coarse[j], cboxes[j], centroids[j], now,
                                     (old.hits + 1) if old else 1)
        return [int(i) for i in ids]  # type: ignore[arg-type]
