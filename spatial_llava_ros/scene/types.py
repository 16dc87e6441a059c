"""Plain data types shared by the scene generator, the marks engine, training and the nodes.

Frames follow REP 103/105:
- world frame (``map``): x forward, y left, z up, metres; the floor is z = 0.
- camera optical frame: x right, y down, z forward (the pinhole convention).
``camera_pose`` is ``world_T_camera``: it maps camera-optical points into the world frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from spatial_llava_ros.camera_types import CameraIntrinsics

# CameraIntrinsics lives in the core (camera_types); re-exported here for older imports
__all__ = ['CameraIntrinsics', 'Expression', 'Frame', 'Scene', 'SceneObject', 'VsrCaption']


@dataclass
class SceneObject:
    """One object of a synthetic scene; ``instance_id`` is its value in ``Frame.instance_mask``."""

    instance_id: int
    category: str
    color_name: str
    color_rgb: tuple[int, int, int]
    center: np.ndarray  # (3,) world frame, metres: centre of its 3D box
    size: np.ndarray  # (3,) extents along its own x, y, z (length, width, height), metres
    yaw: float = 0.0  # rotation about world z, radians

    def corners(self) -> np.ndarray:
        """The 8 corners of its oriented 3D box in the world frame, shape (8, 3)."""
        half = self.size / 2.0
        signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)])
        c, s = np.cos(self.yaw), np.sin(self.yaw)
        rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
        return (signs * half) @ rot.T + self.center

    def contains(self, points: np.ndarray, margin: float = 0.0) -> np.ndarray:
        """Which world points (N, 3) lie inside its oriented box grown by ``margin``."""
        c, s = np.cos(self.yaw), np.sin(self.yaw)
        local = points - self.center
        x = c * local[:, 0] + s * local[:, 1]
        y = -s * local[:, 0] + c * local[:, 1]
        z = local[:, 2]
        half = self.size / 2.0 + margin
        return (np.abs(x) <= half[0]) & (np.abs(y) <= half[1]) & (np.abs(z) <= half[2])


@dataclass
class Frame:
    """One RGB-D camera frame with ground truth."""

    rgb: np.ndarray  # (H, W, 3) uint8, RGB order
    depth: np.ndarray  # (H, W) float32 metres along the optical axis; NaN where invalid
    instance_mask: np.ndarray  # (H, W) int32; 0 = background (floor, walls), else instance_id
    intrinsics: CameraIntrinsics
    camera_pose: np.ndarray  # (4, 4) world_T_camera_optical
    stamp_ns: int = 0


@dataclass
class Expression:
    """A referring expression with its ground-truth target, computed from 3D geometry."""

    text: str  # e.g. "the chair left of the table"
    target_id: int  # instance_id of the referred object
    relation: str  # left_of, right_of, in_front_of, behind, nearest, farthest, between,
    #                next_to, largest, smallest, ordinal
    landmark_ids: list[int] = field(default_factory=list)  # other objects the text names


@dataclass
class VsrCaption:
    """A VSR-style true/false caption: "the mug is left of the box"."""

    caption: str
    label: bool
    relation: str
    subject_id: int
    object_id: int


@dataclass
class Scene:
    """A generated scene: objects, one rendered frame, expressions and captions."""

    seed: int
    objects: list[SceneObject]
    frame: Frame
    expressions: list[Expression]
    vsr_captions: list[VsrCaption]

    def object(self, instance_id: int) -> SceneObject:
        for obj in self.objects:
            if obj.instance_id == instance_id:
                return obj
        raise KeyError(f'no object with instance_id {instance_id}')
