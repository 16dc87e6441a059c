"""Pinhole maths on hand-computed cases."""

import numpy as np
import pytest

from spatial_llava_ros.camera_types import CameraIntrinsics
from spatial_llava_ros.errors import InputError
from spatial_llava_ros.geometry.camera import (
    backproject,
    depth_image_to_points,
    intrinsics_from_fov,
    masked_centroid,
    project,
    validate_intrinsics,
)

K = CameraIntrinsics(fx=100.0, fy=200.0, cx=10.0, cy=5.0, width=20, height=10)


def test_backproject_hand_computed():
    # u=30 is 20 px right of cx: x = 20 * 2 / 100 = 0.4; v=1 is 4 px above cy: y = -4 * 2 / 200
    pts = backproject(np.array([30, 10]), np.array([1, 5]), np.array([2.0, 3.0]), K)
    np.testing.assert_allclose(pts, [[0.4, -0.04, 2.0], [0.0, 0.0, 3.0]])


def test_project_inverts_backproject_and_rejects_points_behind():
    rng = np.random.default_rng(0)
    us, vs = rng.uniform(0, 20, 50), rng.uniform(0, 10, 50)
    z = rng.uniform(0.3, 8.0, 50)
    uv = project(backproject(us, vs, z, K), K)
    np.testing.assert_allclose(uv, np.stack([us, vs], 1), atol=1e-9)
    behind = project(np.array([[0.0, 0.0, -1.0], [0.0, 0.0, 0.0]]), K)
    assert np.isnan(behind).all()
    np.testing.assert_allclose(project(np.array([[1.0, 1.0, 1.0]]), K), [[110.0, 205.0]])


@pytest.mark.parametrize('fx,fy', [(0.0, 1.0), (1.0, -2.0), (float('nan'), 1.0)])
def test_bad_focal_length_is_input_error(fx, fy):
    bad = CameraIntrinsics(fx, fy, 1.0, 1.0, 4, 4)
    with pytest.raises(InputError, match='fx|finite'):
        validate_intrinsics(bad)
    with pytest.raises(InputError):
        backproject(np.array([1]), np.array([1]), np.array([1.0]), bad)


def test_depth_image_to_points_skips_invalid_and_respects_mask():
    depth = np.full((10, 20), 2.0, np.float32)
    depth[0, 0] = np.nan
    depth[0, 1] = 0.0
    depth[0, 2] = np.inf
    depth[0, 3] = -1.0
    assert depth_image_to_points(depth, K).shape == (196, 3)
    mask = np.zeros((10, 20), bool)
    mask[0, :5] = True
    pts = depth_image_to_points(depth, K, mask)
    assert pts.shape == (1, 3)
    np.testing.assert_allclose(pts[0], [(4 - 10) * 2 / 100, (0 - 5) * 2 / 200, 2.0])
    with pytest.raises(InputError, match='intrinsics'):
        depth_image_to_points(np.ones((5, 5)), K)
    with pytest.raises(InputError, match='mask shape'):
        depth_image_to_points(depth, K, np.ones((3, 3), bool))


def test_masked_centroid_is_robust_to_outliers_and_none_without_depth():
    depth = np.full((10, 20), 2.0, np.float32)
    mask = np.zeros((10, 20), bool)
    mask[3:8, 8:13] = True  # 25 px centred on (u=10, v=5)
    depth[3, 8] = 50.0  # one background pixel leaking into the mask
    c = masked_centroid(mask, depth, K, trim=0.1)
    np.testing.assert_allclose(c, [0.0, 0.0, 2.0], atol=1e-9)
    med = masked_centroid(mask, depth, K, trim=0.5)
    np.testing.assert_allclose(med, [0.0, 0.0, 2.0], atol=1e-9)
    plain = masked_centroid(mask, depth, K, trim=0.0)
    assert plain[2] > 3.0  # the untrimmed mean is pulled away: trimming matters
    depth[mask] = np.nan
    assert masked_centroid(mask, depth, K) is None
    with pytest.raises(InputError, match='trim'):
        masked_centroid(mask, depth, K, trim=0.7)


def test_intrinsics_from_fov():
    k = intrinsics_from_fov(640, 480, 90.0)
    assert k.fx == pytest.approx(320.0)
    assert (k.cx, k.cy) == (319.5, 239.5)
    with pytest.raises(InputError):
        intrinsics_from_fov(0, 480)


def test_camera_intrinsics_lives_in_the_core_and_scene_reexports_it():
    """Geometry, marks and nodes take it from the core; the test-bed's old name still works."""
    import spatial_llava_ros.geometry.camera as geo
    import spatial_llava_ros.marks.inputs as inputs
    import spatial_llava_ros.scene.types as scene_types

    assert scene_types.CameraIntrinsics is CameraIntrinsics
    assert geo.CameraIntrinsics is CameraIntrinsics and inputs.CameraIntrinsics is CameraIntrinsics
    assert CameraIntrinsics.__module__ == 'spatial_llava_ros.camera_types'
