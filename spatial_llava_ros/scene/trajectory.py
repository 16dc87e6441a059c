"""A short, smooth camera trajectory through one generated scene (for bags and replay tests)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from spatial_llava_ros.errors import InputError
from spatial_llava_ros.scene.generate import Layout, camera_pose, generate_scene_and_layout
from spatial_llava_ros.scene.render import render_frame
from spatial_llava_ros.scene.types import Frame, Scene

DEFAULT_START_NS = 1_700_000_000 * 10**9  # a fixed epoch keeps bags byte-identical per seed


@dataclass
class Trajectory:
    """``frames[0]`` is ``scene.frame``; expressions and captions hold for frame 0's view."""

    scene: Scene
    layout: Layout
    frames: list[Frame]


def trajectory_poses(layout: Layout, n_frames: int, sway: float = 0.3,
                     pan: float = 0.15) -> list[np.ndarray]:
    """Camera poses: a sideways sway of ``sway`` metres with a counter-pan of ``pan`` radians
    and a slight step back, starting at the scene's own pose."""
    poses = []
    for i in range(n_frames):
        s = i / n_frames  # one full period; the last frame is one step before the first
        wave = math.sin(2 * math.pi * s)
        yaw = layout.camera_yaw - pan * wave
        left = np.array([-math.sin(layout.camera_yaw), math.cos(layout.camera_yaw), 0.0])
        back = -np.array([math.cos(layout.camera_yaw), math.sin(layout.camera_yaw), 0.0])
        position = layout.camera_position + sway * wave * left + \
            0.2 * (1 - math.cos(2 * math.pi * s)) / 2 * back
        poses.append(camera_pose(position, yaw, layout.camera_pitch))
    return poses


def render_trajectory(seed: int, n_frames: int = 30, width: int = 640, height: int = 480, *,
                      fps: float = 10.0, start_ns: int = DEFAULT_START_NS,
                      dropout: float = 0.002, noise_sigma: float = 2.0,
                      n_objects: int | None = None) -> Trajectory:
    """Generate scene ``seed`` and re-render its objects along ``trajectory_poses``."""
    if not 1 <= n_frames <= 10_000:
        raise InputError(f'n_frames must be in [1, 10000], got {n_frames}')
    if not fps > 0:
        raise InputError(f'fps must be > 0, got {fps}')
    scene, layout = generate_scene_and_layout(seed, width, height, n_objects=n_objects,
                                              dropout=dropout, noise_sigma=noise_sigma)
    frames = []
    for i, pose in enumerate(trajectory_poses(layout, n_frames)):
        stamp = int(start_ns + round(i * 1e9 / fps))
        if i == 0:
            frame = scene.frame
            frame.stamp_ns = stamp
        else:
            frame = render_frame(layout.objects, pose, scene.frame.intrinsics, layout.room,
                                 noise_seed=int(seed) + 7919 * i, noise_sigma=noise_sigma,
                                 dropout=dropout, stamp_ns=stamp)
        frames.append(frame)
    return Trajectory(scene, layout, frames)
