"""``MarkerConfig``: every setting that shapes the marks, in a module of its own.

The proposal sources read their parameters from it and the engine builds them from it;
keeping it apart from both lets imports run one way (sources -> config -> params).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from spatial_llava_ros.errors import InputError
from spatial_llava_ros.marks.params import ColorSegmentParams, DepthSegmentParams
from spatial_llava_ros.marks.placement import check_placement
from spatial_llava_ros.marks.render import check_style


@dataclass
class MarkerConfig:
    """Everything that shapes the marks; defaults suit a 640x480 indoor RGB-D camera."""

    proposals: str = 'depth'  # depth | color | detections | sam
    style: str = 'number'  # number | contour | box | tint
    min_area: int = 120  # pixels at full resolution
    max_area_fraction: float = 0.45  # larger masks are background (floor, wall)
    max_marks: int = 40
    border_margin: int = 2  # pixels
    border_max_fraction: float = 0.6  # drop slivers lying mostly along the image edge
    min_depth_fraction: float = 0.2  # depth modes: share of the mask with valid depth
    duplicate_iou: float = 0.7
    overlap_drop: float = 0.7
    centroid_trim: float = 0.1  # trimmed mean per axis; 0.5 = median
    text_height_336: float = 14.0  # digit height in px after the model's resize to 336
    label_placement: str = 'interior'  # interior | beside | auto (marks/placement.py)
    tint_alpha: float = 0.35
    id_reuse_timeout_s: float = 5.0
    track_min_iou: float = 0.2
    track_max_distance_m: float = 0.25
    sam_path: str | None = None
    sam_points_per_side: int = 8
    sam_min_iou: float = 0.75  # SAM's own predicted IoU
    sam_device: str = 'cpu'
    fallback_to_color: bool = True  # depth mode with no valid depth at all: colour proposals
    depth_params: DepthSegmentParams = field(default_factory=DepthSegmentParams)
    color_params: ColorSegmentParams = field(default_factory=ColorSegmentParams)

    def __post_init__(self) -> None:
        check_style(self.style)
        check_placement(self.label_placement)
        if self.min_area < 1 or self.max_marks < 1:
            raise InputError(f'min_area and max_marks must be >= 1, got {self.min_area}, '
                             f'{self.max_marks}')
        if not 0 < self.max_area_fraction <= 1:
            raise InputError(f'max_area_fraction must be in (0, 1], got {self.max_area_fraction}')
        if self.id_reuse_timeout_s < 0:
            raise InputError(f'id_reuse_timeout_s must be >= 0, got {self.id_reuse_timeout_s}')

    @classmethod
    def from_kwargs(cls, **kwargs) -> MarkerConfig:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(kwargs) - names)
        if unknown:
            raise InputError(f'unknown MarkerConfig option(s): {", ".join(unknown)}')
        return cls(**kwargs)
