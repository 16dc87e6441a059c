"""Rigid transforms as plain 4x4 matrices and (x, y, z, w) quaternions.

The nodes fetch a transform from tf2 once (at the image stamp) and hand it to the core
as a 4x4 matrix, so all the maths is here and tested without ROS. Quaternions use the
ROS order (x, y, z, w), as in geometry_msgs/Quaternion. ``a_T_b`` maps points in frame b
into frame a (tf2's ``lookup_transform(target=a, source=b)``).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence

import numpy as np

from spatial_llava_ros.errors import InputError, ResolveError

_UNIT_TOL = 1e-6


def _as_quat(q: Sequence[float] | np.ndarray) -> np.ndarray:
    arr = np.asarray(q, dtype=np.float64)
    if arr.shape != (4,):
        raise InputError(f'a quaternion needs 4 values (x, y, z, w), got shape {arr.shape}')
    if not np.all(np.isfinite(arr)):
        raise InputError(f'quaternion must be finite, got {arr.tolist()}')
    norm = float(np.linalg.norm(arr))
    if norm < 1e-9:
        raise InputError(f'quaternion has zero norm: {arr.tolist()}')
    return arr / norm


def quaternion_to_matrix(q: Sequence[float] | np.ndarray) -> np.ndarray:
    """(x, y, z, w) -> 3x3 rotation matrix; the quaternion is normalised first."""
    x, y, z, w = _as_quat(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def _check_rotation(rot: np.ndarray) -> np.ndarray:
    r = np.asarray(rot, dtype=np.float64)
    if r.shape != (3, 3):
        raise InputError(f'a rotation matrix must be 3x3, got shape {r.shape}')
    if not np.all(np.isfinite(r)):
        raise InputError('rotation matrix must be finite')
    err = float(np.abs(r @ r.T - np.eye(3)).max())
    det = float(np.linalg.det(r))
    if err > 1e-5 or abs(det - 1.0) > 1e-5:
        raise InputError(f'not a rotation matrix: |R R^T - I| = {err:.2e}, det = {det:.6f}')
    return r


def matrix_to_quaternion(rot: np.ndarray) -> np.ndarray:
    """3x3 rotation matrix -> unit quaternion (x, y, z, w) with w >= 0 (Shepperd's method)."""
    r = _check_rotation(rot)
    trace = r[0, 0] + r[1, 1] + r[2, 2]
    if trace > 0:
        s = 2.0 * math.sqrt(trace + 1.0)
        q = [(r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s, s / 4]
    elif r[0, 0] > r[1, 1] and r[0, 0] > r[2, 2]:
        s = 2.0 * math.sqrt(1.0 + r[0, 0] - r[1, 1] - r[2, 2])
        q = [s / 4, (r[0, 1] + r[1, 0]) / s, (r[0, 2] + r[2, 0]) / s, (r[2, 1] - r[1, 2]) / s]
    elif r[1, 1] > r[2, 2]:
        s = 2.0 * math.sqrt(1.0 + r[1, 1] - r[0, 0] - r[2, 2])
        q = [(r[0, 1] + r[1, 0]) / s, s / 4, (r[1, 2] + r[2, 1]) / s, (r[0, 2] - r[2, 0]) / s]
    else:
        s = 2.0 * math.sqrt(1.0 + r[2, 2] - r[0, 0] - r[1, 1])
        q = [(r[0, 2] + r[2, 0]) / s, (r[1, 2] + r[2, 1]) / s, s / 4, (r[1, 0] - r[0, 1]) / s]
    quat = np.array(q)
    quat /= np.linalg.norm(quat)
    return -quat if quat[3] < 0 else quat


def quaternion_from_yaw(yaw: float) -> np.ndarray:
    """Rotation of ``yaw`` radians about +z as (x, y, z, w)."""
    if not math.isfinite(yaw):
        raise InputError(f'yaw must be finite, got {yaw}')
    return np.array([0.0, 0.0, math.sin(yaw / 2.0), math.cos(yaw / 2.0)])


def yaw_from_quaternion(q: Sequence[float] | np.ndarray) -> float:
    """Heading in (-pi, pi]: the angle of the rotated x axis projected on the xy plane.

    Well defined unless the rotated x axis points straight up or down, which is an
    InputError (a goal pose's heading would be meaningless).
    """
    rot = quaternion_to_matrix(q)
    x_axis = rot[:, 0]
    if math.hypot(x_axis[0], x_axis[1]) < 1e-9:
        raise InputError(f'yaw undefined: the x axis of {np.round(q, 6).tolist()} is vertical')
    return math.atan2(x_axis[1], x_axis[0])


def quaternion_multiply(a: Sequence[float], b: Sequence[float]) -> np.ndarray:
    """Hamilton product a * b of (x, y, z, w) quaternions (apply b, then a)."""
    ax, ay, az, aw = _as_quat(a)
    bx, by, bz, bw = _as_quat(b)
    return np.array([
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
        aw * bw - ax * bx - ay * by - az * bz,
    ])


def make_transform(translation: Sequence[float] | np.ndarray,
                   rotation: Sequence[float] | np.ndarray | None = None) -> np.ndarray:
    """4x4 transform from a translation (3,) and a quaternion (4,) or 3x3 matrix (identity)."""
    t = np.asarray(translation, dtype=np.float64)
    if t.shape != (3,) or not np.all(np.isfinite(t)):
        raise InputError(f'translation must be 3 finite values, got {np.asarray(t).tolist()}')
    out = np.eye(4)
    if rotation is not None:
        rot = np.asarray(rotation, dtype=np.float64)
        out[:3, :3] = quaternion_to_matrix(rot) if rot.shape == (4,) else _check_rotation(rot)
    out[:3, 3] = t
    return out


def check_transform(transform: np.ndarray) -> np.ndarray:
    """Return ``transform`` as float64 after checking it is a rigid 4x4 transform."""
    m = np.asarray(transform, dtype=np.float64)
    if m.shape != (4, 4):
        raise InputError(f'a transform must be 4x4, got shape {m.shape}')
    if not np.allclose(m[3], [0.0, 0.0, 0.0, 1.0], atol=1e-9):
        raise InputError(f'last row of a rigid transform must be [0 0 0 1], got {m[3].tolist()}')
    if not np.all(np.isfinite(m[:3, 3])):
        raise InputError(f'translation must be finite, got {m[:3, 3].tolist()}')
    _check_rotation(m[:3, :3])
    return m


def invert_transform(transform: np.ndarray) -> np.ndarray:
    """Inverse of a rigid transform (R^T, -R^T t), exact rather than a general inverse."""
    m = check_transform(transform)
    out = np.eye(4)
    rot_t = m[:3, :3].T
    out[:3, :3] = rot_t
    out[:3, 3] = -rot_t @ m[:3, 3]
    return out


def compose(*transforms: np.ndarray) -> np.ndarray:
    """``compose(a_T_b, b_T_c, ...)`` -> ``a_T_c``: the product left to right."""
    if not transforms:
        raise InputError('compose needs at least one transform')
    out = np.eye(4)
    for m in transforms:
        out = out @ check_transform(m)
    return out


def transform_points(transform: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply ``a_T_b`` to points in frame b: (N, 3) -> (N, 3), or (3,) -> (3,)."""
    m = check_transform(transform)
    pts = np.asarray(points, dtype=np.float64)
    single = pts.shape == (3,)
    if single:
        pts = pts[None]
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise InputError(f'points must have shape (N, 3) or (3,), got {np.shape(points)}')
    out = pts @ m[:3, :3].T + m[:3, 3]
    return out[0] if single else out


def transform_to_translation_quaternion(transform: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """4x4 -> (translation (3,), quaternion (x, y, z, w)): the fields of a tf2 Transform."""
    m = check_transform(transform)
    return m[:3, 3].copy(), matrix_to_quaternion(m[:3, :3])


class TransformUnavailableError(ResolveError):
    """tf could not give ``target <- source`` at the frame's stamp."""


class TransformTable:
    """A tf-like lookup over fixed transforms (replay, tests, a static robot).

    ``add(parent, child, parent_T_child)``; ``lookup(target, source, stamp)`` chains edges
    in either direction (breadth-first), ignoring the stamp.
    """

    def __init__(self) -> None:
        self._edges: dict[str, dict[str, np.ndarray]] = {}

    @classmethod
    def from_edges(cls, edges: dict[tuple[str, str], np.ndarray]) -> TransformTable:
        """A table of ``{(parent, child): parent_T_child}`` (a bag's /tf at one stamp)."""
        table = cls()
        for (parent, child), matrix in edges.items():
            table.add(parent, child, matrix)
        return table

    def add(self, parent: str, child: str, parent_from_child: np.ndarray) -> None:
        m = check_transform(parent_from_child)
        if not parent or not child or parent == child:
            raise InputError(f'a transform needs two different frame names, got '
                             f'{parent!r} -> {child!r}')
        self._edges.setdefault(parent, {})[child] = m
        self._edges.setdefault(child, {})[parent] = invert_transform(m)

    def lookup(self, target: str, source: str, stamp_ns: int = 0) -> np.ndarray:
        if target == source:
            return np.eye(4)
        seen = {target: np.eye(4)}
        todo = deque([target])
        while todo:
            frame = todo.popleft()
            for nxt, frame_from_nxt in self._edges.get(frame, {}).items():
                if nxt in seen:
                    continue
                seen[nxt] = compose(seen[frame], frame_from_nxt)
                if nxt == source:
                    return seen[nxt]
                todo.append(nxt)
        known = sorted(self._edges)
        raise TransformUnavailableError(f'no transform from {source!r} to {target!r}; '
                                        f'frames known: {known}')

    __call__ = lookup
