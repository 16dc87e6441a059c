"""A side-by-side picture of a frame: RGB | depth (turbo colour map) | instance masks."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from spatial_llava_ros.errors import InputError
from spatial_llava_ros.scene.types import Frame


def instance_colors(n: int) -> np.ndarray:
    """(n + 1, 3) uint8 RGB: black for background, then well-spread hues."""
    hues = (np.arange(n) * 0.618033988749895) % 1.0
    hsv = np.stack([hues * 179, np.full(n, 200), np.full(n, 255)], axis=1).astype(np.uint8)
    rgb = cv2.cvtColor(hsv[None], cv2.COLOR_HSV2RGB)[0]
    return np.concatenate([np.zeros((1, 3), np.uint8), rgb])


def preview_image(frame: Frame, scale: float = 1.0) -> np.ndarray:
    """(H, 3W, 3) uint8 RGB; invalid depth is black; ``scale`` resizes each panel."""
    if not 0.05 <= scale <= 4.0:
        raise InputError(f'scale must be in [0.05, 4], got {scale}')
    depth = frame.depth
    valid = np.isfinite(depth)
    lo, hi = (float(depth[valid].min()), float(depth[valid].max())) if valid.any() else (0, 1)
    norm = np.zeros(depth.shape, np.uint8)
    norm[valid] = np.clip(255 * (depth[valid] - lo) / max(hi - lo, 1e-6), 0, 255)
    depth_rgb = cv2.applyColorMap(255 - norm, cv2.COLORMAP_TURBO)[:, :, ::-1].copy()
    depth_rgb[~valid] = 0
    ids = frame.instance_mask
    inst_rgb = instance_colors(int(ids.max()))[np.clip(ids, 0, None)]
    panels = [frame.rgb, depth_rgb, inst_rgb]
    if scale != 1.0:
        height, width = frame.rgb.shape[:2]
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        panels = [cv2.resize(frame.rgb, size, interpolation=cv2.INTER_AREA),
                  cv2.resize(depth_rgb, size, interpolation=cv2.INTER_NEAREST),
                  cv2.resize(inst_rgb, size, interpolation=cv2.INTER_NEAREST)]
    return np.concatenate(panels, axis=1)


def write_preview(frame: Frame, path: str | Path, scale: float = 1.0) -> Path:
    """Write ``preview_image`` as a PNG."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode('.png', cv2.cvtColor(preview_image(frame, scale), cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_PNG_COMPRESSION, 9])
    if not ok:
        raise InputError(f'could not encode preview {path}')
    path.write_bytes(buf.tobytes())
    return path
