"""launch_testing: replay.launch.py with the builtin bag player, no rosbag2, no robot.

Runs under a real ROS 2 (``colcon test`` or ``launch_test test/test_launch_replay.py`` in a
sourced workspace); skipped with a reason where rclpy, launch_testing or the built interfaces
are missing.

A short synthetic trajectory bag (6 frames, 320x240, 10 Hz: 0.6 s per pass) is written in
generate_test_description and played by bag_player (loop, /clock) into bringup with
use_sim_time and the model shipped in the package. The test process checks that
- /clock advances monotonically and /tf_static is latched for a late subscriber;
- marks arrive, and a query asked after the bag has looped is answered on a frame of a later
  pass (stamps shifted by whole bag periods), with tf still resolving at that stamp: the
  result's map point is the camera point moved by the TRUE camera pose of that bag frame
  (1 cm), it lies inside the true 3D box of the object under the chosen mark (5 cm margin),
  and the goal is the stand-off point from the true robot base (1 cm);
- a missing or corrupt bag makes bag_player exit 1 with one error line, no traceback;
- every process exits cleanly at shutdown.
"""

from __future__ import annotations

import math
import subprocess
import sys
import tempfile
import time
import unittest
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip('rclpy', reason='launch tests need ROS 2 (rclpy); run them in a '
                            'sourced colcon workspace')
pytest.importorskip('launch_testing', reason='launch tests need launch_testing (ROS 2)')
pytest.importorskip('spatial_llava_ros.msg', reason='the generated interfaces are missing: '
                    'colcon build the package first')

import launch  # noqa: E402
import launch_testing.actions  # noqa: E402
import launch_testing.asserts  # noqa: E402
from ament_index_python.packages import (  # noqa: E402
    get_package_prefix,
    get_package_share_directory,
)
from geometry_msgs.msg import PoseStamped  # noqa: E402
from launch.actions import IncludeLaunchDescription  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from tf2_msgs.msg import TFMessage  # noqa: E402

from spatial_llava_ros.geometry.goals import navigation_goal  # noqa: E402
from spatial_llava_ros.geometry.transforms import transform_points  # noqa: E402
from spatial_llava_ros.msg import MarkArray, SpatialQuery, SpatialResult  # noqa: E402
from spatial_llava_ros.nodes.conversions import bbox_to_box  # noqa: E402
from spatial_llava_ros.scene.bag import (  # noqa: E402
    BASE_FRAME,
    CAMERA_FRAME,
    COLOR_TOPIC,
    MAP_FRAME,
    OPTICAL_FRAME,
    tf_chain,
    write_bag,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ros_launch_helpers as helpers  # noqa: E402
from test_launch_scene import object_in_box  # noqa: E402

# seed 2 at 320x240: every depth mark of all 6 frames lies on an object, its centroid inside
# that object's true box (checked on the ROS-free path), so any mark the model picks is judged
SEED, N_FRAMES, SIZE, FPS = 2, 6, (320, 240), 10.0
FRAME_NS = int(round(1e9 / FPS))
PERIOD_NS = N_FRAMES * FRAME_NS  # one pass: span + one frame interval (scene.playback)
QUERY = 'the laptop left of the white laptop'
STANDOFF = 0.8
EXACT, INSIDE = 0.01, 0.05  # metres
STARTED = time.monotonic()


@lru_cache(maxsize=1)
def trajectory():
    from spatial_llava_ros.scene.trajectory import render_trajectory

    return render_trajectory(SEED, N_FRAMES, *SIZE, fps=FPS)


@pytest.mark.launch_test
def generate_test_description():
    work = Path(tempfile.mkdtemp(prefix='spatial_llava_replay_'))
    bag = write_bag(trajectory().frames, work / 'traj.mcap')
    params = work / 'params.yaml'
    params.write_text(
        '/**/marker_node:\n  ros__parameters:\n    min_area: 60\n    max_frame_age: 2.0\n'
        '/**/resolver_node:\n  ros__parameters:\n'
        f'    standoff: {STANDOFF}\n    max_frame_age: 2.0\n    tf_timeout: 0.5\n'
        '    target_frame: map\n    base_frame: base_link\n')
    replay = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(str(
            Path(get_package_share_directory('spatial_llava_ros')) / 'launch' /
            'replay.launch.py')),
        launch_arguments={'bag': str(bag), 'player': 'builtin', 'loop': 'true',
                          'rate': '1.0', 'start_delay': '1.0', 'device': 'cpu',
                          'params_file': str(params), 'navigate': 'false'}.items())
    return launch.LaunchDescription([replay, launch_testing.actions.ReadyToTest()]), {}


def _stamp_ns(t) -> int:
    return int(t.sec) * 10**9 + int(t.nanosec)


def _xyz(p) -> np.ndarray:
    return np.array([p.x, p.y, p.z], dtype=np.float64)


class TestReplay(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        rclpy.init()
        cls.node = rclpy.create_node('spatial_llava_replay_test')
        cls.clock, cls.results, cls.goals, cls.marks, cls.frames = [], [], [], [], []
        cls.node.create_subscription(
            Clock, '/clock', lambda m: cls.clock.append((time.monotonic(), _stamp_ns(m.clock))),
            QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT))
        cls.node.create_subscription(
            Image, COLOR_TOPIC, lambda m: cls.frames.append(_stamp_ns(m.header.stamp)),
            QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT))
        cls.node.create_subscription(SpatialResult, '/spatial_result', cls.results.append, 10)
        cls.node.create_subscription(PoseStamped, '/goal_pose', cls.goals.append, 10)
        cls.node.create_subscription(MarkArray, '/marks', cls.marks.append, 10)
        cls.query_pub = cls.node.create_publisher(SpatialQuery, '/spatial_query', 10)

    @classmethod
    def tearDownClass(cls):
        cls.node.destroy_node()
        rclpy.shutdown()

    def spin_until(self, done, timeout: float) -> bool:
        return helpers.spin_until(self.node, done, timeout)

    def wait_active(self):
        if not helpers.wait_for_state(self.node, 'active', timeout=120.0):
            self.fail('resolver_node did not become active within 120 s')

    # ---- cases (run in name order) -----------------------------------------------------

    def test_1_clock_advances_and_marks_arrive(self):
        self.wait_active()
        start = trajectory().frames[0].stamp_ns
        ok = self.spin_until(lambda: sum(m.header.frame_id == OPTICAL_FRAME and bool(m.marks)
                                         for m in self.marks) >= 3, 60.0)
        self.assertTrue(ok, f'{len(self.marks)} MarkArrays, {len(self.frames)} colour frames '
                        f'and {len(self.clock)} clock ticks within 60 s')
        # past the first pass: the query below is answered on a looped frame
        ok = self.spin_until(lambda: self.clock and
                             self.clock[-1][1] > start + 1.5 * PERIOD_NS, 30.0)
        self.assertTrue(ok, 'the bag clock did not pass 1.5 bag periods within 30 s')
        values = [c for _, c in self.clock]
        self.assertEqual(values, sorted(values), '/clock went backwards')
        self.assertGreaterEqual(values[0], start)
        self.assertGreater(values[-1], values[0])
        playing = [(w, c) for w, c in self.clock if c > start]  # after start_delay
        wall = playing[-1][0] - playing[0][0]
        print(f'\n[replay] first marks {time.monotonic() - STARTED:.1f} s after start; '
              f'{len(self.frames)} colour frames, {len(values)} clock msgs; bag time ran '
              f'{(playing[-1][1] - playing[0][1]) / 1e9 / wall:.2f} x wall time over '
              f'{wall:.2f} s')

    def test_2_tf_static_is_latched(self):
        got = []
        sub = self.node.create_subscription(
            TFMessage, '/tf_static', got.append,
            QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                       durability=DurabilityPolicy.TRANSIENT_LOCAL))
        self.assertTrue(self.spin_until(lambda: bool(got), 5.0), 'no latched /tf_static')
        t = got[0].transforms[0]
        self.assertEqual((t.header.frame_id, t.child_frame_id), (CAMERA_FRAME, OPTICAL_FRAME))
        self.node.destroy_subscription(sub)

    def test_3_query_on_a_looped_frame_matches_ground_truth(self):
        traj = trajectory()
        start = traj.frames[0].stamp_ns
        msg = SpatialQuery()
        msg.header.stamp = self.node.get_clock().now().to_msg()
        msg.text, msg.action = QUERY, SpatialQuery.NAVIGATE
        goals_before = len(self.goals)
        asked = time.monotonic()
        self.query_pub.publish(msg)
        ok = self.spin_until(lambda: any(r.query == QUERY for r in self.results), 30.0)
        self.assertTrue(ok, f'no SpatialResult for {QUERY!r} within 30 s')
        result = next(r for r in self.results if r.query == QUERY)
        print(f'\n[replay] result {time.monotonic() - asked:.2f} s after the query, '
              f'{time.monotonic() - STARTED:.1f} s after start: success={result.success} '
              f'mark={result.mark_id} reason={result.reason!r}')
        self.assertTrue(result.success, result.reason)
        self.assertEqual(result.header.frame_id, MAP_FRAME)

        # which bag frame, on which pass: stamps move by whole bag periods per pass
        since = _stamp_ns(result.frame_stamp) - start
        passes, within = divmod(since, PERIOD_NS)
        self.assertGreaterEqual(passes, 1, 'answered on the first pass; loop not exercised')
        self.assertEqual(within % FRAME_NS, 0, f'frame stamp {since} ns is not a bag frame')
        truth = traj.frames[within // FRAME_NS]

        # tf at the shifted stamp gave that frame's true camera pose
        cam = _xyz(result.target_point_camera.point)
        target = _xyz(result.target_point.point)
        moved = transform_points(truth.camera_pose, cam[None])[0]
        self.assertLess(float(np.linalg.norm(target - moved)), EXACT,
                        f'map point {target} vs true pose x camera point {moved}')
        # the point is on the object under the chosen mark
        b = result.box
        box = bbox_to_box(b.center.position.x, b.center.position.y, b.size_x, b.size_y)
        instance = object_in_box(truth, box)
        self.assertGreater(instance, 0, f'mark {result.mark_id} box {box} is background')
        obj = next(o for o in traj.scene.objects if o.instance_id == instance)
        self.assertTrue(obj.contains(target[None], INSIDE)[0],
                        f'{target} is not within {INSIDE} m of {obj.category} {instance}')
        # the goal is the stand-off point from the true robot base
        base_xy = tf_chain(truth.camera_pose)[(MAP_FRAME, BASE_FRAME)][:2, 3]
        expected = navigation_goal(target, base_xy, STANDOFF, MAP_FRAME).position
        got = _xyz(result.goal_pose.pose.position)
        self.assertLess(float(np.linalg.norm(got - expected)), EXACT, f'{got} vs {expected}')
        self.assertTrue(self.spin_until(lambda: len(self.goals) > goals_before, 5.0))
        self.assertTrue(math.isclose(self.goals[-1].pose.position.x, got[0], abs_tol=1e-6))
        print(f'[replay] answered on pass {passes + 1}, bag frame {within // FRAME_NS}: '
              f'{obj.color_name} {obj.category}, goal {np.round(got, 3)}')

    def test_4_missing_or_corrupt_bag_is_one_error_line(self):
        exe = Path(get_package_prefix('spatial_llava_ros')) / 'lib' / 'spatial_llava_ros' / \
            'bag_player_node'
        work = Path(tempfile.mkdtemp(prefix='spatial_llava_badbag_'))
        corrupt = work / 'corrupt.mcap'
        corrupt.write_bytes(b'\x89MCAP0\r\n' + bytes(range(256)) * 4)
        for bag in (work / 'missing.mcap', corrupt):
            run = subprocess.run([str(exe), '--ros-args', '-p', f'bag:={bag}', '-r',
                                  '__node:=bag_player_bad'], capture_output=True, text=True,
                                 timeout=60)
            out = run.stdout + run.stderr
            self.assertEqual(run.returncode, 1, out)
            self.assertNotIn('Traceback', out)
            errors = [line for line in out.splitlines() if '[ERROR]' in line]
            self.assertEqual(len(errors), 1, out)
            self.assertIn(bag.name, errors[0])


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    def test_nodes_exit_cleanly(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info, allowable_exit_codes=[0, -2, -15])
