"""Quaternion / 4x4 maths against hand-computed cases."""

import math

import numpy as np
import pytest

from spatial_llava_ros.errors import InputError
from spatial_llava_ros.geometry.transforms import (
    check_transform,
    compose,
    invert_transform,
    make_transform,
    matrix_to_quaternion,
    quaternion_from_yaw,
    quaternion_multiply,
    quaternion_to_matrix,
    transform_points,
    transform_to_translation_quaternion,
    yaw_from_quaternion,
)

S = math.sqrt(0.5)


def test_quaternion_to_matrix_hand_computed():
    np.testing.assert_allclose(quaternion_to_matrix([0, 0, 0, 1]), np.eye(3))
    # 90 deg about z: x -> y, y -> -x
    np.testing.assert_allclose(quaternion_to_matrix([0, 0, S, S]),
                               [[0, -1, 0], [1, 0, 0], [0, 0, 1]], atol=1e-12)
    # 180 deg about x: y -> -y, z -> -z
    np.testing.assert_allclose(quaternion_to_matrix([1, 0, 0, 0]),
                               [[1, 0, 0], [0, -1, 0], [0, 0, -1]], atol=1e-12)
    # not normalised: scaled quaternions are the same rotation
    np.testing.assert_allclose(quaternion_to_matrix([0, 0, 2, 2]),
                               quaternion_to_matrix([0, 0, S, S]), atol=1e-12)


def test_ros_camera_optical_rotation():
    # The standard base -> optical rotation (REP 103): optical z = body x, optical x = -body y,
    # optical y = -body z. tf2 publishes it as quaternion (-0.5, 0.5, -0.5, 0.5).
    rot = quaternion_to_matrix([-0.5, 0.5, -0.5, 0.5])
    np.testing.assert_allclose(rot @ [0, 0, 1], [1, 0, 0], atol=1e-12)  # optical z -> body x
    np.testing.assert_allclose(rot @ [1, 0, 0], [0, -1, 0], atol=1e-12)  # optical x -> -body y
    np.testing.assert_allclose(rot @ [0, 1, 0], [0, 0, -1], atol=1e-12)  # optical y -> -body z
    np.testing.assert_allclose(matrix_to_quaternion(rot), [-0.5, 0.5, -0.5, 0.5], atol=1e-12)


@pytest.mark.parametrize('q', [
    [0, 0, 0, 1], [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, S, S], [S, 0, 0, -S],
    [0.1, -0.7, 0.3, 0.2], [0.5, 0.5, 0.5, 0.5], [-0.9, 0.1, 0.1, 0.05],
])
def test_matrix_quaternion_round_trip_on_every_branch(q):
    q = np.asarray(q, float) / np.linalg.norm(q)
    back = matrix_to_quaternion(quaternion_to_matrix(q))
    assert back[3] >= 0
    assert min(np.abs(back - q).max(), np.abs(back + q).max()) < 1e-12  # q and -q are equal


def test_yaw_from_quaternion():
    for yaw in (0.0, 0.3, -2.0, math.pi / 2, 3.0):
        assert yaw_from_quaternion(quaternion_from_yaw(yaw)) == pytest.approx(yaw)
    np.testing.assert_allclose(quaternion_from_yaw(math.pi / 2), [0, 0, S, S])
    # a pitched pose still has the yaw of its x axis' projection: yaw 90 deg, pitch 30 deg
    pitch = quaternion_multiply(quaternion_from_yaw(math.pi / 2),
                                [0, math.sin(math.radians(15)), 0, math.cos(math.radians(15))])
    assert yaw_from_quaternion(pitch) == pytest.approx(math.pi / 2)
    with pytest.raises(InputError, match='vertical'):
        yaw_from_quaternion([0, S, 0, S])  # x axis pitched to straight down


def test_quaternion_multiply_composes_rotations():
    a, b = quaternion_from_yaw(0.4), quaternion_from_yaw(0.5)
    np.testing.assert_allclose(quaternion_multiply(a, b), quaternion_from_yaw(0.9), atol=1e-12)
    qa, qb = [0.1, 0.2, 0.3, 0.9], [-0.4, 0.1, 0.2, 0.8]
    np.testing.assert_allclose(quaternion_to_matrix(quaternion_multiply(qa, qb)),
                               quaternion_to_matrix(qa) @ quaternion_to_matrix(qb), atol=1e-12)


def test_transform_points_compose_and_invert_hand_computed():
    # map_from_base: robot at (2, 1) facing +y; base_from_cam: camera 0.5 m forward, 1 m up
    map_from_base = make_transform([2.0, 1.0, 0.0], quaternion_from_yaw(math.pi / 2))
    base_from_cam = make_transform([0.5, 0.0, 1.0])
    map_from_cam = compose(map_from_base, base_from_cam)
    # the camera origin: 0.5 m along the robot's heading (+y) from (2, 1), 1 m up
    np.testing.assert_allclose(transform_points(map_from_cam, [0, 0, 0]), [2.0, 1.5, 1.0],
                               atol=1e-12)
    # a point 1 m in front of the camera (body x) is 1.5 m along +y from the robot
    np.testing.assert_allclose(transform_points(map_from_cam, np.array([[1.0, 0, 0]])),
                               [[2.0, 2.5, 1.0]], atol=1e-12)
    cam_from_map = invert_transform(map_from_cam)
    np.testing.assert_allclose(compose(cam_from_map, map_from_cam), np.eye(4), atol=1e-12)
    np.testing.assert_allclose(transform_points(cam_from_map, [2.0, 2.5, 1.0]), [1.0, 0, 0],
                               atol=1e-12)
    t, q = transform_to_translation_quaternion(map_from_cam)
    np.testing.assert_allclose(t, [2.0, 1.5, 1.0], atol=1e-12)
    np.testing.assert_allclose(q, quaternion_from_yaw(math.pi / 2), atol=1e-12)


def test_bad_inputs_are_input_errors_with_numbers():
    with pytest.raises(InputError, match='4 values'):
        quaternion_to_matrix([0, 0, 1])
    with pytest.raises(InputError, match='zero norm'):
        quaternion_to_matrix([0, 0, 0, 0])
    with pytest.raises(InputError, match='finite'):
        quaternion_to_matrix([0, 0, float('nan'), 1])
    with pytest.raises(InputError, match='det'):
        matrix_to_quaternion(np.diag([1.0, 1.0, -1.0]))
    with pytest.raises(InputError, match='4x4'):
        check_transform(np.eye(3))
    bad = np.eye(4)
    bad[3, 0] = 1.0
    with pytest.raises(InputError, match='last row'):
        invert_transform(bad)
    with pytest.raises(InputError, match=r'\(N, 3\)'):
        transform_points(np.eye(4), np.zeros((2, 2)))
    with pytest.raises(InputError, match='translation'):
        make_transform([0, 0])
    with pytest.raises(InputError, match='at least one'):
        compose()


def test_transform_table_from_edges_chains_both_ways():
    from spatial_llava_ros.geometry.transforms import TransformTable, TransformUnavailableError

    map_base = make_transform([1.0, 2.0, 0.0], quaternion_from_yaw(math.pi / 2))
    base_cam = make_transform([0.5, 0.0, 1.0], [0.0, 0.0, 0.0, 1.0])
    table = TransformTable.from_edges({('map', 'base'): map_base, ('base', 'cam'): base_cam})
    # the camera origin: 0.5 m ahead of a robot at (1, 2) facing +y -> (1, 2.5, 1)
    np.testing.assert_allclose(table.lookup('map', 'cam')[:3, 3], [1.0, 2.5, 1.0], atol=1e-12)
    np.testing.assert_allclose(table.lookup('cam', 'map') @ table.lookup('map', 'cam'),
                               np.eye(4), atol=1e-12)
    with pytest.raises(TransformUnavailableError, match="'odom'"):
        table.lookup('map', 'odom')
