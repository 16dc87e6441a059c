"""Synthetic RGB-D indoor scenes with ground truth (see docs/scene.md).

Public names are loaded lazily, so ``spatial_llava_ros.scene.types`` stays importable
from anywhere (geometry imports it) without pulling in the renderer:

    from spatial_llava_ros.scene import generate_scene, render_frame, CATEGORIES, RELATIONS
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    'CATEGORIES': 'catalog', 'COLORS': 'catalog', 'CATEGORY_SPECS': 'catalog',
    'RELATIONS': 'expressions',
    'generate_scene': 'generate', 'camera_pose': 'generate', 'Layout': 'generate',
    'describe_view': 'generate',
    'render_frame': 'render', 'Room': 'render',
    'render_trajectory': 'trajectory', 'Trajectory': 'trajectory',
    'write_scene': 'io', 'read_scene': 'io',
    'write_bag': 'bag', 'read_bag': 'bag',
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        module = importlib.import_module(f'{__name__}.{_EXPORTS[name]}')
        return getattr(module, name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
