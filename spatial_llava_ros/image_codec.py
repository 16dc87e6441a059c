"""sensor_msgs/Image encodings <-> numpy, with no ROS (no cv_bridge) needed.

Used by the marks engine, the nodes and bag replay so that every path decodes
images the same way and fails the same way: an ``InputError`` with the numbers.
"""

from __future__ import annotations

import numpy as np

from spatial_llava_ros.errors import InputError

# encoding -> (numpy dtype, channels); names as in sensor_msgs/image_encodings.hpp
ENCODINGS: dict[str, tuple[np.dtype, int]] = {
    'rgb8': (np.dtype(np.uint8), 3),
    'bgr8': (np.dtype(np.uint8), 3),
    'rgba8': (np.dtype(np.uint8), 4),
    'bgra8': (np.dtype(np.uint8), 4),
    'rgb16': (np.dtype(np.uint16), 3),
    'bgr16': (np.dtype(np.uint16), 3),
    'mono8': (np.dtype(np.uint8), 1),
    'mono16': (np.dtype(np.uint16), 1),
    '8UC1': (np.dtype(np.uint8), 1),
    '8UC3': (np.dtype(np.uint8), 3),
    '8UC4': (np.dtype(np.uint8), 4),
    '16UC1': (np.dtype(np.uint16), 1),
    '32FC1': (np.dtype(np.float32), 1),
    '64FC1': (np.dtype(np.float64), 1),
}

COLOR_ENCODINGS = ('rgb8', 'bgr8', 'rgba8', 'bgra8', 'mono8', 'mono16', '8UC3', '8UC1')
DEPTH_ENCODINGS = ('16UC1', 'mono16', '32FC1', '64FC1')


def _lookup(encoding: str) -> tuple[np.dtype, int]:
    try:
        return ENCODINGS[encoding]
    except KeyError:
        raise InputError(f'unsupported image encoding {encoding!r}; supported: '
                         f'{", ".join(sorted(ENCODINGS))}') from None


def decode_image(data: bytes, height: int, width: int, encoding: str, step: int,
                 is_bigendian: int = 0) -> np.ndarray:
    """A sensor_msgs/Image payload -> (H, W) or (H, W, C) array in native byte order.

    Row padding (``step`` > width * pixel size) is dropped. The result is a copy.
    """
    dtype, channels = _lookup(encoding)
    if height <= 0 or width <= 0:
        raise InputError(f'image size must be > 0, got {width}x{height} ({encoding})')
    row_bytes = width * channels * dtype.itemsize
    if step < row_bytes:
        raise InputError(f'step {step} < width {width} x {channels} channel(s) x '
                         f'{dtype.itemsize} byte(s) = {row_bytes} ({encoding})')
    if isinstance(data, np.ndarray):  # rosbags hands out uint8 arrays
        buf = np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    else:
        try:  # bytes, bytearray, memoryview, array.array('B') (rclpy)
            buf = np.frombuffer(memoryview(data).cast('B'), dtype=np.uint8)
        except TypeError:  # a plain sequence of ints
            buf = np.asarray(data, dtype=np.uint8).reshape(-1)
    if buf.size < step * height:
        raise InputError(f'image data has {buf.size} bytes, expected step {step} x height '
                         f'{height} = {step * height} ({encoding})')
    raw = buf[:step * height].reshape(height, step)
    raw = raw[:, :row_bytes]
    order = '>' if is_bigendian else '<'
    typed = np.ascontiguousarray(raw).view(dtype.newbyteorder(order) if dtype.itemsize > 1
                                           else dtype)
    arr = typed.astype(dtype, copy=True)  # to native byte order, owns its memory
    if channels == 1:
        return arr.reshape(height, width)
    return arr.reshape(height, width, channels)


def encode_image(array: np.ndarray, encoding: str) -> tuple[bytes, int]:
    """An array -> (little-endian data, step) for a sensor_msgs/Image of ``encoding``."""
    dtype, channels = _lookup(encoding)
    arr = np.asarray(array)
    expected_ndim = 2 if channels == 1 else 3
    if channels == 1 and arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim != expected_ndim or (channels > 1 and arr.shape[2] != channels):
        want = '(H, W)' if channels == 1 else f'(H, W, {channels})'
        raise InputError(f'{encoding} needs shape {want}, got {arr.shape}')
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InputError(f'cannot encode an empty image of shape {arr.shape}')
    if arr.dtype != dtype:
        if np.issubdtype(dtype, np.integer) and not np.issubdtype(arr.dtype, np.integer) \
                and arr.dtype != np.bool_:
            raise InputError(f'{encoding} needs {dtype} data, got {arr.dtype}; convert explicitly')
        arr = arr.astype(dtype)
    arr = np.ascontiguousarray(arr, dtype=dtype.newbyteorder('<'))
    step = arr.shape[1] * channels * dtype.itemsize
    return arr.tobytes(), step


def to_rgb8(array: np.ndarray, encoding: str) -> np.ndarray:
    """A decoded colour or grey image -> (H, W, 3) uint8 in RGB order.

    mono16 is scaled by its own maximum (a display conversion, like cv_bridge's).
    8UC3 is taken as BGR, which is what OpenCV-based drivers publish.
    """
    if encoding not in COLOR_ENCODINGS:
        raise InputError(f'cannot convert {encoding!r} to rgb8; supported: '
                         f'{", ".join(COLOR_ENCODINGS)}')
    arr = np.asarray(array)
    if arr.ndim < 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InputError(f'empty or not an image: shape {arr.shape} ({encoding})')
    _, channels = ENCODINGS[encoding]
    if channels == 1:
        if arr.ndim == 3 and arr.shape[2] == 1:
            arr = arr[:, :, 0]
        if arr.ndim != 2:
            raise InputError(f'{encoding} needs shape (H, W), got {arr.shape}')
        if encoding == 'mono16':
            top = int(arr.max())
            grey = (arr.astype(np.float64) * (255.0 / top)).round().astype(np.uint8) if top \
                else np.zeros(arr.shape, np.uint8)
        else:
            grey = arr.astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] != channels:
        raise InputError(f'{encoding} needs shape (H, W, {channels}), got {arr.shape}')
    arr = arr.astype(np.uint8, copy=False)
    if encoding in ('rgb8', 'rgba8'):
        return np.ascontiguousarray(arr[:, :, :3])
    return np.ascontiguousarray(arr[:, :, 2::-1])  # bgr8, bgra8, 8UC3


def depth_to_metres(array: np.ndarray, encoding: str) -> np.ndarray:
    """A decoded depth image -> (H, W) float32 metres, NaN where the sensor had no reading.

    16UC1 / mono16 hold millimetres with 0 = invalid (REP 118); 32FC1 / 64FC1 hold metres
    and 0, inf, NaN or negative values are invalid.
    """
    if encoding not in DEPTH_ENCODINGS:
        raise InputError(f'unsupported depth encoding {encoding!r}; supported: '
                         f'{", ".join(DEPTH_ENCODINGS)}')
    arr = np.asarray(array)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim != 2:
        raise InputError(f'depth must have shape (H, W), got {arr.shape} ({encoding})')
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InputError(f'empty depth image: shape {arr.shape}')
    if encoding in ('16UC1', 'mono16'):
        if not np.issubdtype(arr.dtype, np.integer):
            raise InputError(f'{encoding} depth must be integer millimetres, got {arr.dtype}')
        out = arr.astype(np.float32) / np.float32(1000.0)
        out[arr <= 0] = np.nan
        return out
    out = arr.astype(np.float32, copy=True)
    with np.errstate(invalid='ignore'):
        bad = out <= 0  # NaN compares False: it stays NaN
        bad |= np.isinf(out)
    np.copyto(out, np.float32(np.nan), where=bad)
    return out


def metres_to_depth16(depth: np.ndarray) -> np.ndarray:
    """float metres (NaN invalid) -> uint16 millimetres (0 invalid), clipped at 65.535 m."""
    arr = np.asarray(depth, dtype=np.float64)
    with np.errstate(invalid='ignore'):
        valid = np.isfinite(arr) & (arr > 0)
    mm = np.zeros(arr.shape, dtype=np.uint16)
    mm[valid] = np.clip(np.round(arr[valid] * 1000.0), 1, 65535).astype(np.uint16)
    return mm
