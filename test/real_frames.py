"""Real camera frames for the marks tests, from scikit-image's bundled data (the dev extra).

Photographs (colour only) and one real RGB-D frame: the left image of the Middlebury 2014
"Motorcycle" stereo pair with its ground-truth disparity turned into metric depth through
that data set's calibration (scaled to the bundled quarter-size image). None of them comes
from the synthetic test-bed.
"""

from __future__ import annotations

import numpy as np

from spatial_llava_ros.camera_types import CameraIntrinsics

PHOTOS = ('astronaut', 'coffee', 'chelsea', 'rocket')

# Middlebury 2014 Motorcycle (full size 2964 x 1988): focal length and principal point in
# pixels, the disparity offset between the two cameras' principal points, baseline in metres
_FULL_WIDTH = 2964
_F, _CX, _CY, _DOFFS, _BASELINE = 3979.911, 1244.772, 1019.507, 124.343, 0.193001


def photo(name: str) -> np.ndarray:
    """(H, W, 3) uint8 RGB photograph."""
    import skimage.data

    return np.ascontiguousarray(getattr(skimage.data, name)()[..., :3])


def motorcycle_rgbd() -> tuple[np.ndarray, np.ndarray, CameraIntrinsics]:
    """(rgb, depth in metres with NaN where unknown, intrinsics) of a real RGB-D frame."""
    import skimage.data

    left, _right, disparity = skimage.data.stereo_motorcycle()
    h, w = left.shape[:2]
    s = w / _FULL_WIDTH
    f = _F * s
    with np.errstate(divide='ignore', invalid='ignore'):
        depth = (_BASELINE * f / (disparity + _DOFFS * s)).astype(np.float32)
    depth[~np.isfinite(disparity) | (disparity <= 0)] = np.nan
    return (np.ascontiguousarray(left), depth,
            CameraIntrinsics(f, f, _CX * s, _CY * s, w, h))
