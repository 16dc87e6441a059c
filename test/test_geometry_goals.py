"""Navigation stand-off goals and manipulation poses on hand-computed cases."""

import math

import numpy as np
import pytest

from spatial_llava_ros.errors import InputError
from spatial_llava_ros.geometry.goals import (
    approach_yaw,
    manipulation_pose,
    navigation_goal,
    robot_position,
    robot_yaw,
)
from spatial_llava_ros.geometry.transforms import (
    make_transform,
    quaternion_from_yaw,
    yaw_from_quaternion,
)


def test_standoff_on_the_line_from_the_robot_facing_the_target():
    # robot at origin, target 3 m ahead and 4 m left (5 m away) on a 0.8 m high table
    goal = navigation_goal([3.0, 4.0, 0.8], [0.0, 0.0, 0.0], standoff=1.0)
    # 1 m short of the target along the unit vector (0.6, 0.8); on the floor
    np.testing.assert_allclose(goal.position, [3.0 - 0.6, 4.0 - 0.8, 0.0], atol=1e-12)
    assert goal.yaw == pytest.approx(math.atan2(4.0, 3.0))
    assert goal.frame_id == 'map'
    assert yaw_from_quaternion(goal.orientation) == pytest.approx(goal.yaw)
    np.testing.assert_allclose(goal.orientation[:2], [0.0, 0.0])  # yaw only
    # the goal's x axis points at the target
    to_target = np.array([3.0, 4.0]) - goal.position[:2]
    heading = goal.as_matrix()[:2, 0]
    assert np.dot(heading, to_target / np.linalg.norm(to_target)) == pytest.approx(1.0)
    assert np.linalg.norm(to_target) == pytest.approx(1.0)


def test_robot_height_and_target_height_do_not_matter():
    a = navigation_goal([3.0, 4.0, 0.0], [0.0, 0.0, 0.0], 1.0)
    b = navigation_goal([3.0, 4.0, 1.7], [0.0, 0.0, 0.3], 1.0)
    np.testing.assert_allclose(a.position, b.position)
    assert a.yaw == b.yaw


def test_robot_closer_than_standoff_backs_off_on_the_same_line():
    goal = navigation_goal([1.0, 0.0, 0.5], [0.5, 0.0], standoff=1.0, frame_id='odom')
    np.testing.assert_allclose(goal.position, [0.0, 0.0, 0.0], atol=1e-12)
    assert goal.yaw == pytest.approx(0.0)
    assert goal.frame_id == 'odom'


def test_directions_in_every_quadrant():
    for angle in (-3.0, -1.5, 0.0, 0.7, 2.0, math.pi):
        target = [2.0 + 3.0 * math.cos(angle), -1.0 + 3.0 * math.sin(angle), 0.4]
        goal = navigation_goal(target, [2.0, -1.0], standoff=0.5)
        assert math.cos(goal.yaw - angle) == pytest.approx(1.0)
        np.testing.assert_allclose(
            goal.position[:2], [2.0 + 2.5 * math.cos(angle), -1.0 + 2.5 * math.sin(angle)],
            atol=1e-12)


def test_zero_standoff_puts_the_goal_under_the_target():
    goal = navigation_goal([1.0, 2.0, 0.9], [0.0, 0.0], standoff=0.0)
    np.testing.assert_allclose(goal.position, [1.0, 2.0, 0.0])


def test_robot_on_the_target_needs_a_fallback_heading():
    with pytest.raises(InputError, match='approach direction undefined'):
        navigation_goal([1.0, 1.0, 0.5], [1.0, 1.0, 0.0], 0.7)
    goal = navigation_goal([1.0, 1.0, 0.5], [1.0, 1.0, 0.0], 0.7, fallback_yaw=math.pi / 2)
    np.testing.assert_allclose(goal.position, [1.0, 0.3, 0.0], atol=1e-12)
    assert approach_yaw([0, 0], [0, 0], fallback_yaw=0.25) == 0.25


@pytest.mark.parametrize('standoff', [-0.1, float('nan'), float('inf')])
def test_bad_standoff_is_input_error(standoff):
    with pytest.raises(InputError, match='standoff'):
        navigation_goal([1.0, 0.0, 0.0], [0.0, 0.0], standoff)


def test_bad_points_are_input_errors():
    with pytest.raises(InputError, match='target'):
        navigation_goal([1.0, float('nan'), 0.0], [0.0, 0.0], 1.0)
    with pytest.raises(InputError, match='robot position'):
        navigation_goal([1.0, 0.0, 0.0], [0.0], 1.0)


def test_manipulation_pose_is_the_target_with_x_along_the_approach():
    pose = manipulation_pose([1.0, 1.0, 0.75], [0.0, 0.0, 0.0])
    np.testing.assert_allclose(pose.position, [1.0, 1.0, 0.75])
    assert pose.yaw == pytest.approx(math.pi / 4)
    m = pose.as_matrix()
    np.testing.assert_allclose(m[:3, 0], [math.sqrt(0.5), math.sqrt(0.5), 0.0], atol=1e-12)
    np.testing.assert_allclose(m[:3, 2], [0.0, 0.0, 1.0], atol=1e-12)  # z up
    np.testing.assert_allclose(m[:3, 1], np.cross(m[:3, 2], m[:3, 0]), atol=1e-12)


def test_robot_position_and_yaw_from_tf():
    map_from_base = make_transform([4.0, -2.0, 0.1], quaternion_from_yaw(-0.6))
    np.testing.assert_allclose(robot_position(map_from_base), [4.0, -2.0, 0.1])
    assert robot_yaw(map_from_base) == pytest.approx(-0.6)
