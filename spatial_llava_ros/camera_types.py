"""Camera intrinsics: the one camera type that geometry, marks, nodes and the scene share.

It lives in the core, not in the synthetic test-bed (``scene``), because a real camera's
CameraInfo becomes one too; ``scene.types`` re-exports it for older imports.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CameraIntrinsics:
    """Pinhole intrinsics of an undistorted image (sensor_msgs/CameraInfo K)."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    @property
    def K(self) -> np.ndarray:  # noqa: N802 - the usual name for the camera matrix
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    def to_dict(self) -> dict:
        return {'fx': self.fx, 'fy': self.fy, 'cx': self.cx, 'cy': self.cy,
                'width': self.width, 'height': self.height}

    @classmethod
    def from_dict(cls, data: dict) -> CameraIntrinsics:
        return cls(float(data['fx']), float(data['fy']), float(data['cx']), float(data['cy']),
                   int(data['width']), int(data['height']))
