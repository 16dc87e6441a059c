"""Tuning knobs of the built-in proposal sources, apart from the sources themselves.

``MarkerConfig`` holds one of each, and every source reads its own from the config, so
the parameters live below both: config -> params, sources -> config -> params, never back.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class DepthSegmentParams:
    stride: int = 2  # work on every stride-th pixel
    ransac_points: int = 1024
    ransac_hypotheses: int = 64
    max_planes: int = 5
    min_plane_fraction: float = 0.06  # of the sampled points
    plane_threshold_m: float = 0.015  # inlier distance at 1 m...
    plane_threshold_per_m: float = 0.01  # ...growing with depth (sensor noise)
    gravity_deg: float = 50.0  # the floor's normal is within this of the camera's -y
    horizontal_deg: float = 8.0  # normal within this of "up" = horizontal plane
    vertical_deg: float = 15.0  # normal within this of horizontal = vertical plane
    wall_extent_m: float = 1.6  # a vertical plane patch at least this long is a wall
    wall_min_fraction: float = 0.005  # components this big (of the image) may be walls
    min_floor_height_m: float = 0.2  # camera height above a plane for it to be a floor
    jump_abs_m: float = 0.04  # depth discontinuity between neighbours...
    jump_rel: float = 0.04  # ...plus this fraction of the depth
    chroma_edge: float = 0.08  # |dr| + |dg| chromaticity step that splits touching objects
    chroma_min_brightness: float = 90.0  # r+g+b below this: chromaticity is too noisy
    plane_chroma: float = 0.025  # a floor/table pixel must match the plane's chromaticity...
    plane_brightness_log: float = 0.2  # ...and brightness (same normal, same shading)
    seat_part_extent_m: float = 0.5  # same-colour parts this big rising from a seat join it
    open_bridges: bool = True
    min_component_px: int = 12  # at working resolution
    seed: int = 0


@dataclass
class ColorSegmentParams:
    scale: float = 0.5  # work at this fraction of the image size
    sigma: float = 0.5  # Gaussian smoothing before the graph segmentation
    k: float = 300.0  # larger k: larger segments
    min_size: int = 30  # pixels at working resolution
    merge_distance: float = 9.0  # chroma (Lab a, b) distance + lightness_weight * |dL|
    lightness_weight: float = 0.35
    max_region_fraction: float = 0.3  # larger regions are background
