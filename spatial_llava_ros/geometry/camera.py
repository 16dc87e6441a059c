"""Pinhole camera maths: pixels + depth <-> points in the camera optical frame.

The optical frame follows REP 103: x right, y down, z forward (along the optical axis).
Depth is the z coordinate (what RGB-D drivers publish), not the ray length.
"""

from __future__ import annotations

import numpy as np

from spatial_llava_ros.camera_types import CameraIntrinsics
from spatial_llava_ros.errors import InputError

# Below one pixel the pinhole field of view exceeds ~179 degrees: no real camera_info has it,
# and back-projection would produce points far beyond float range (1e-100 -> 1e100 m).
MIN_FOCAL_PX = 1.0


def validate_intrinsics(intrinsics: CameraIntrinsics) -> None:
    """Reject intrinsics that would divide by zero or describe an empty image."""
    values = (intrinsics.fx, intrinsics.fy, intrinsics.cx, intrinsics.cy)
    if not all(np.isfinite(v) for v in values):
        raise InputError(f'intrinsics must be finite: fx={intrinsics.fx} fy={intrinsics.fy} '
                         f'cx={intrinsics.cx} cy={intrinsics.cy}')
    if intrinsics.fx < MIN_FOCAL_PX or intrinsics.fy < MIN_FOCAL_PX:
        raise InputError(f'focal lengths must be >= {MIN_FOCAL_PX} pixel (pinhole camera): '
                         f'fx={intrinsics.fx} fy={intrinsics.fy}')
    if intrinsics.width <= 0 or intrinsics.height <= 0:
        raise InputError(f'image size must be > 0: {intrinsics.width}x{intrinsics.height}')


def intrinsics_from_fov(width: int, height: int, hfov_deg: float = 69.0) -> CameraIntrinsics:
    """Square-pixel intrinsics, principal point at the image centre (RealSense-like FOV)."""
    if width <= 0 or height <= 0:
        raise InputError(f'image size must be > 0: {width}x{height}')
    if not 1.0 <= hfov_deg <= 179.0:
        raise InputError(f'horizontal field of view must be in [1, 179] degrees: {hfov_deg}')
    fx = (width / 2.0) / np.tan(np.radians(hfov_deg) / 2.0)
    return CameraIntrinsics(float(fx), float(fx), (width - 1) / 2.0, (height - 1) / 2.0,
                            int(width), int(height))


def backproject(us: np.ndarray, vs: np.ndarray, depth_values: np.ndarray,
                intrinsics: CameraIntrinsics) -> np.ndarray:
    """Pixel columns ``us``, rows ``vs`` and depths (metres) -> (N, 3) optical-frame points."""
    validate_intrinsics(intrinsics)
    us = np.asarray(us, dtype=np.float64).ravel()
    vs = np.asarray(vs, dtype=np.float64).ravel()
    z = np.asarray(depth_values, dtype=np.float64).ravel()
    if not us.shape == vs.shape == z.shape:
        raise InputError(f'us, vs and depth must have the same length: '
                         f'{us.shape[0]}, {vs.shape[0]}, {z.shape[0]}')
    x = (us - intrinsics.cx) * z / intrinsics.fx
    y = (vs - intrinsics.cy) * z / intrinsics.fy
    return np.stack([x, y, z], axis=1)


def project(points: np.ndarray, intrinsics: CameraIntrinsics) -> np.ndarray:
    """(N, 3) optical-frame points -> (N, 2) pixel coordinates (u, v); NaN for z <= 0."""
    validate_intrinsics(intrinsics)
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise InputError(f'points must have shape (N, 3), got {pts.shape}')
    z = pts[:, 2]
    with np.errstate(divide='ignore', invalid='ignore'):
        u = intrinsics.fx * pts[:, 0] / z + intrinsics.cx
        v = intrinsics.fy * pts[:, 1] / z + intrinsics.cy
    behind = ~(z > 0)
    u[behind] = np.nan
    v[behind] = np.nan
    return np.stack([u, v], axis=1)


def _check_depth(depth: np.ndarray, intrinsics: CameraIntrinsics) -> np.ndarray:
    depth = np.asarray(depth)
    if depth.ndim != 2:
        raise InputError(f'depth must be a 2-D (H, W) array of metres, got shape {depth.shape}')
    if depth.shape != (intrinsics.height, intrinsics.width):
        raise InputError(f'depth is {depth.shape[1]}x{depth.shape[0]} but intrinsics are '
                         f'{intrinsics.width}x{intrinsics.height}')
    return depth


def _valid_depth(depth: np.ndarray) -> np.ndarray:
    with np.errstate(invalid='ignore'):
        return np.isfinite(depth) & (depth > 0)


def depth_image_to_points(depth: np.ndarray, intrinsics: CameraIntrinsics,
                          mask: np.ndarray | None = None) -> np.ndarray:
    """Every valid depth pixel (optionally only inside ``mask``) -> (N, 3) optical-frame points.

    Invalid depth (NaN, inf, <= 0) is skipped, so N may be 0.
    """
    validate_intrinsics(intrinsics)
    depth = _check_depth(depth, intrinsics)
    valid = _valid_depth(depth)
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != depth.shape:
            raise InputError(f'mask shape {mask.shape} != depth shape {depth.shape}')
        valid &= mask.astype(bool)
    vs, us = np.nonzero(valid)
    return backproject(us, vs, depth[vs, us], intrinsics)


def masked_centroid(mask: np.ndarray, depth: np.ndarray, intrinsics: CameraIntrinsics,
                    trim: float = 0.1) -> np.ndarray | None:
    """Robust 3D centre (optical frame) of the visible surface inside ``mask``.

    Depth at mask borders often belongs to the background (mixed pixels) and sensors
    drop out, so per axis a trimmed mean drops the ``trim`` fraction at each end
    (``trim=0.5`` gives the median). Returns None when the mask holds no valid depth.
    """
    if not 0.0 <= trim <= 0.5:
        raise InputError(f'trim must be in [0, 0.5], got {trim}')
    validate_intrinsics(intrinsics)
    depth = _check_depth(depth, intrinsics)
    mask = np.asarray(mask)
    if mask.shape != depth.shape:
        raise InputError(f'mask shape {mask.shape} != depth shape {depth.shape}')
    vs, us = np.nonzero(mask)
    z = depth[vs, us]  # validity checked on the mask's pixels only, not the whole crop
    ok = _valid_depth(z)
    if not ok.all():
        vs, us, z = vs[ok], us[ok], z[ok]
    n = vs.size
    if n == 0:
        return None
    # per axis on flat arrays (the trim is per axis anyway): no (N, 3) stack to sort
    z = z.astype(np.float64)
    x = (us - intrinsics.cx) * z / intrinsics.fx
    y = (vs - intrinsics.cy) * z / intrinsics.fy
    if trim >= 0.5:
        return np.array([np.median(a) for a in (x, y, z)])
    cut = int(np.floor(n * trim))
    if cut == 0 or n - 2 * cut <= 0:
        return np.array([a.mean() for a in (x, y, z)])
    # the middle n - 2 cut values of each axis: a partition finds them without a sort
    return np.array([np.partition(a, (cut, n - cut - 1))[cut:n - cut].mean()
                     for a in (x, y, z)])
