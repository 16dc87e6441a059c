"""What the marks engine hands to the resolver, the nodes and training.

A ``MarkedFrame`` is the contract between marking and everything after it: the
image the model sees (numbers drawn) and, per number, the mask, box, anchor and
3D centroid needed to turn the model's answer back into a place in the world.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from spatial_llava_ros.camera_types import CameraIntrinsics
from spatial_llava_ros.errors import ResolveError


@dataclass
class Mark:
    """One numbered object of a frame."""

    mark_id: int  # the number drawn, >= 1
    mask: np.ndarray  # (H, W) bool
    box: tuple[int, int, int, int]  # x_min, y_min, x_max, y_max in pixels (max exclusive)
    anchor: tuple[int, int]  # (u, v) pixel where the number is drawn
    pixel_count: int
    centroid: np.ndarray | None  # (3,) camera optical frame, metres; None = no valid depth
    score: float = 1.0  # proposal confidence
    label: str | None = None  # class label when an external detector supplied one
    # the rectangle the number was drawn in (x0, y0, x1, y1; max exclusive), and the leader
    # line ((u0, v0), (u1, v1)) from it to the mask when the number sits off its object
    label_rect: tuple[int, int, int, int] | None = None
    leader: tuple[tuple[int, int], tuple[int, int]] | None = None

    def to_dict(self) -> dict:
        """JSON-ready summary (no mask): what the CLI prints and the nodes log."""
        return {
            'mark_id': int(self.mark_id),
            'box': [int(v) for v in self.box],
            'anchor': [int(v) for v in self.anchor],
            'pixel_count': int(self.pixel_count),
            'centroid': None if self.centroid is None
            else [round(float(v), 4) for v in self.centroid],
            'score': round(float(self.score), 4),
            'label': self.label,
            'label_rect': None if self.label_rect is None else [int(v) for v in self.label_rect],
            'leader': None if self.leader is None
            else [[int(v) for v in p] for p in self.leader],
        }


@dataclass
class MarkedFrame:
    """A frame after marking: the marked image the model sees plus every mark's geometry."""

    image: np.ndarray  # (H, W, 3) uint8 RGB, marks drawn
    rgb: np.ndarray  # the unmarked input, RGB
    marks: list[Mark] = field(default_factory=list)
    depth: np.ndarray | None = None  # float32 metres, NaN invalid
    intrinsics: CameraIntrinsics | None = None
    stamp_ns: int = 0
    notes: list[str] = field(default_factory=list)  # why marks are few/none, fallbacks taken

    def mark(self, mark_id: int) -> Mark:
        """The mark drawn as ``mark_id``; ResolveError naming the ids present if absent."""
        for m in self.marks:
            if m.mark_id == mark_id:
                return m
        raise ResolveError(f'no mark {mark_id} in this frame; marks present: {self.mark_ids}')

    @property
    def mark_ids(self) -> list[int]:
        return [m.mark_id for m in self.marks]

    def label_map(self) -> np.ndarray:
        """(H, W) int32 image of mark ids, 0 where no mark (masks do not overlap)."""
        out = np.zeros(self.rgb.shape[:2], dtype=np.int32)
        for m in self.marks:
            out[m.mask] = m.mark_id
        return out
