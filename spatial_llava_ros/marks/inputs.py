"""Checks and conversions of one frame's inputs before any proposal runs.

Every path into the engine (numpy caller, CLI, ROS node, bag replay) goes through
here, so a bad frame fails the same way everywhere: an ``InputError`` with the numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

from spatial_llava_ros.camera_types import CameraIntrinsics
from spatial_llava_ros.errors import InputError
from spatial_llava_ros.geometry.camera import validate_intrinsics
from spatial_llava_ros.image_codec import depth_to_metres, to_rgb8

MIN_SIDE = 8  # smaller images cannot hold a readable number, let alone an object


@dataclass
class FrameInput:
    """A validated frame: RGB uint8, optional float32 metres depth (NaN invalid), same size."""

    rgb: np.ndarray
    depth: np.ndarray | None
    intrinsics: CameraIntrinsics | None
    notes: list[str]


def _as_rgb(rgb: np.ndarray, encoding: str) -> np.ndarray:
    arr = np.asarray(rgb)
    if arr.size == 0 or arr.ndim < 2:
        raise InputError(f'empty or not an image: shape {arr.shape}')
    if arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 1):
        # a single-channel array can only be grey, whatever the caller called it
        encoding = 'mono16' if arr.dtype == np.uint16 else 'mono8'
    elif arr.ndim == 3 and arr.shape[2] == 4 and encoding in ('rgb8', 'bgr8'):
        raise InputError(f'image has 4 channels (shape {arr.shape}) but encoding is {encoding!r};'
                         f' use rgba8 or bgra8')
    if arr.dtype == np.uint8 or encoding == 'mono16':
        pass
    elif np.issubdtype(arr.dtype, np.floating) and np.nanmax(arr) <= 1.0 + 1e-6:
        arr = np.clip(np.nan_to_num(arr) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    else:
        raise InputError(f'colour image must be uint8 (or floats in [0, 1]), got {arr.dtype}')
    out = to_rgb8(arr, encoding)
    h, w = out.shape[:2]
    if h < MIN_SIDE or w < MIN_SIDE:
        raise InputError(f'image is {w}x{h}; marking needs at least {MIN_SIDE}x{MIN_SIDE} pixels')
    return out


def _as_depth(depth: np.ndarray, encoding: str | None) -> np.ndarray:
    arr = np.asarray(depth)
    if arr.size == 0:
        raise InputError(f'empty depth image: shape {arr.shape}')
    if encoding is None:
        if np.issubdtype(arr.dtype, np.integer):
            encoding = '16UC1'  # integer depth is millimetres (REP 118)
        elif np.issubdtype(arr.dtype, np.floating):
            encoding = '32FC1'
        else:
            raise InputError(f'depth must be uint16 millimetres or float metres, got {arr.dtype}')
    metres = depth_to_metres(arr, encoding)
    if encoding in ('32FC1', '64FC1'):
        sample = metres[::7, ::7]  # a sparse sample is enough to tell mm from m
        valid = sample[np.isfinite(sample)]
        # "most values over 100 m" is the median test without sorting (the error path
        # prints the median itself)
        if valid.size and 2 * np.count_nonzero(valid > 100.0) > valid.size:
            raise InputError(f'float depth has median {float(np.median(valid)):.0f} m, which looks'
                             f' like millimetres; pass uint16 (16UC1) or divide by 1000')
    return metres


def _scale_intrinsics(k: CameraIntrinsics, width: int, height: int) -> CameraIntrinsics:
    sx, sy = width / k.width, height / k.height
    # pixel centres: u' + 0.5 = (u + 0.5) * s
    return replace(k, fx=k.fx * sx, fy=k.fy * sy, cx=(k.cx + 0.5) * sx - 0.5,
                   cy=(k.cy + 0.5) * sy - 0.5, width=width, height=height)


def _same_aspect(w1: int, h1: int, w2: int, h2: int) -> bool:
    return abs(w1 * h2 - w2 * h1) <= max(w1, w2)  # within about one pixel


def prepare(rgb: np.ndarray, depth: np.ndarray | None = None,
            intrinsics: CameraIntrinsics | None = None, rgb_encoding: str = 'rgb8',
            depth_encoding: str | None = None) -> FrameInput:
    """Decode and cross-check one frame; colour sets the output size.

    A depth map or intrinsics of another resolution but the same aspect ratio (a
    registered depth stream at half resolution, say) is rescaled to the colour image;
    any other size mismatch is an ``InputError`` naming both sizes.
    """
    notes: list[str] = []
    image = _as_rgb(rgb, rgb_encoding)
    h, w = image.shape[:2]
    if intrinsics is not None:
        if not isinstance(intrinsics, CameraIntrinsics):
            raise InputError(f'intrinsics must be a CameraIntrinsics, got {type(intrinsics)}')
        validate_intrinsics(intrinsics)
        if (intrinsics.width, intrinsics.height) != (w, h):
            if not _same_aspect(intrinsics.width, intrinsics.height, w, h):
                raise InputError(f'intrinsics are for {intrinsics.width}x{intrinsics.height} '
                                 f'but the image is {w}x{h} (different aspect ratio)')
            notes.append(f'intrinsics scaled from {intrinsics.width}x{intrinsics.height} '
                         f'to {w}x{h}')
            intrinsics = _scale_intrinsics(intrinsics, w, h)
    metres = None
    if depth is not None:
        metres = _as_depth(depth, depth_encoding)
        dh, dw = metres.shape
        if (dw, dh) != (w, h):
            if not _same_aspect(dw, dh, w, h):
                raise InputError(f'depth is {dw}x{dh} but the colour image is {w}x{h} '
                                 f'(different aspect ratio; register depth to colour first)')
            metres = cv2.resize(metres, (w, h), interpolation=cv2.INTER_NEAREST)
            notes.append(f'depth resized from {dw}x{dh} to {w}x{h}')
        if intrinsics is None:
            raise InputError('depth was given without camera intrinsics; 3D centroids and depth '
                             'proposals need fx, fy, cx, cy')
        if not np.isfinite(metres).any():
            notes.append(f'depth has no valid pixel (all {dw}x{dh} are 0, NaN or inf)')
    return FrameInput(image, metres, intrinsics, notes)
