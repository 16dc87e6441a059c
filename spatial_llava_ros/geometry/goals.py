"""Goal poses from a located target: a navigation stand-off pose and a manipulation pose.

All inputs are in one fixed frame (``map`` by default, REP 105: x forward, y left, z up,
floor at z = 0): the target point (from the mark's masked centroid, moved into the frame
with tf2) and the robot's position (the base frame's origin in the same frame).

Navigation goal: on the floor (z = 0), ``standoff`` metres short of the target along the
horizontal line from the robot to the target, heading towards the target (yaw only).
If the robot is already closer than ``standoff``, the goal is behind it on the same line,
so Nav2 backs it off to the same viewing distance.

Manipulation pose (for grasp planners): position = the target point itself (3D);
orientation = yaw only, with the pose's x axis along the horizontal approach direction
(robot -> target), z up, y = z cross x (left). A planner that grasps top-down rotates this
by +90 degrees about the pose's y axis; one that approaches from the side uses it as is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from spatial_llava_ros.errors import InputError
from spatial_llava_ros.geometry.transforms import check_transform, quaternion_from_yaw

# Below this horizontal robot-target distance (metres) the approach direction is undefined.
MIN_APPROACH_DISTANCE = 1e-3


@dataclass(frozen=True)
class GoalPose:
    """A pose in ``frame_id``: position (3,) metres, orientation (x, y, z, w), its yaw."""

    frame_id: str
    position: np.ndarray
    orientation: np.ndarray
    yaw: float

    def as_matrix(self) -> np.ndarray:
        """The pose as a 4x4 ``frame_T_pose``."""
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        out = np.eye(4)
        out[:2, :2] = [[c, -s], [s, c]]
        out[:3, 3] = self.position
        return out


def _point3(value: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64).ravel()
    if arr.shape == (2,):
        arr = np.array([arr[0], arr[1], 0.0])
    if arr.shape != (3,) or not np.all(np.isfinite(arr)):
        raise InputError(f'{name} must be 2 or 3 finite values, got {np.asarray(value).tolist()}')
    return arr


def approach_yaw(target: Sequence[float] | np.ndarray,
                 robot_position: Sequence[float] | np.ndarray,
                 fallback_yaw: float | None = None) -> float:
    """Heading of the horizontal line robot -> target.

    When the robot stands on the target's floor position (closer than
    MIN_APPROACH_DISTANCE) the line is undefined: ``fallback_yaw`` (e.g. the robot's own
    heading) is used if given, otherwise it is an InputError.
    """
    tgt = _point3(target, 'target')
    robot = _point3(robot_position, 'robot position')
    dx, dy = tgt[0] - robot[0], tgt[1] - robot[1]
    dist = math.hypot(dx, dy)
    if dist < MIN_APPROACH_DISTANCE:
        if fallback_yaw is None or not math.isfinite(fallback_yaw):
            raise InputError(f'approach direction undefined: robot ({robot[0]:.3f}, '
                             f'{robot[1]:.3f}) is {dist:.4f} m from the target '
                             f'({tgt[0]:.3f}, {tgt[1]:.3f}) on the floor')
        return float(fallback_yaw)
    return math.atan2(dy, dx)


def navigation_goal(target: Sequence[float] | np.ndarray,
                    robot_position: Sequence[float] | np.ndarray,
                    standoff: float,
                    frame_id: str = 'map',
                    fallback_yaw: float | None = None) -> GoalPose:
    """Floor pose ``standoff`` metres before ``target`` on the line from the robot, facing it."""
    if not math.isfinite(standoff) or standoff < 0:
        raise InputError(f'standoff must be a finite distance >= 0 m, got {standoff}')
    tgt = _point3(target, 'target')
    yaw = approach_yaw(tgt, robot_position, fallback_yaw)
    position = np.array([tgt[0] - standoff * math.cos(yaw),
                         tgt[1] - standoff * math.sin(yaw), 0.0])
    return GoalPose(frame_id, position, quaternion_from_yaw(yaw), yaw)


def manipulation_pose(target: Sequence[float] | np.ndarray,
                      robot_position: Sequence[float] | np.ndarray,
                      frame_id: str = 'map',
                      fallback_yaw: float | None = None) -> GoalPose:
    """Pose at ``target`` with x along the horizontal approach direction and z up."""
    tgt = _point3(target, 'target')
    yaw = approach_yaw(tgt, robot_position, fallback_yaw)
    return GoalPose(frame_id, tgt.copy(), quaternion_from_yaw(yaw), yaw)


def robot_position(frame_from_base: np.ndarray) -> np.ndarray:
    """The base frame's origin in the fixed frame.

    ``frame_from_base`` is tf2's ``lookup_transform(frame, base_frame, stamp)`` as a 4x4.
    """
    return check_transform(frame_from_base)[:3, 3].copy()


def robot_yaw(frame_from_base: np.ndarray) -> float:
    """The base frame's heading in the fixed frame (the fallback for approach_yaw)."""
    m = check_transform(frame_from_base)
    return math.atan2(m[1, 0], m[0, 0])
