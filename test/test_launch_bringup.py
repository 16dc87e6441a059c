"""launch_testing: bringup.launch.py with the tiny model on a synthetic scene.

Runs under a real ROS 2 (``colcon test --packages-select spatial_llava_ros`` or
``launch_test test/test_launch_bringup.py`` in a sourced workspace); skipped with a reason
where rclpy, launch_testing or the built interfaces are missing.

The test process plays the robot: it publishes the tf tree (static), colour, depth and
camera_info frames of a rendered scene (test_launch_scene.py), queries on /spatial_query
and goals on the ResolveSpatialQuery action, and checks that
- a query before any frame, a stale frame, a missing transform, a target without depth
  and an absent Nav2 server each give success=false with the matching reason code;
- a query on a fresh frame gives a SpatialResult and a /goal_pose in `map` within 5 cm of
  the stand-off point computed from the TRUE surface of the object the model chose;
- after each case the resolver is still `active`.
"""

from __future__ import annotations

import sys
import tempfile
import time
import unittest
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip('rclpy', reason='launch tests need ROS 2 (rclpy); run them in a '
                            'sourced colcon workspace')
pytest.importorskip('launch_testing', reason='launch tests need '
                    'launch_testing (ROS 2)')
pytest.importorskip('spatial_llava_ros.msg', reason='the generated interfaces are missing: '
                    'colcon build the package first')

import launch  # noqa: E402
import launch_testing.actions  # noqa: E402
import launch_testing.asserts  # noqa: E402
from ament_index_python.packages import get_package_share_directory  # noqa: E402
from geometry_msgs.msg import PoseStamped, TransformStamped  # noqa: E402
from launch.actions import IncludeLaunchDescription  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402
from rclpy.action import ActionClient  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402
from tf2_ros import StaticTransformBroadcaster  # noqa: E402

from spatial_llava_ros.action import ResolveSpatialQuery  # noqa: E402
from spatial_llava_ros.geometry.transforms import (  # noqa: E402
    transform_to_translation_quaternion,
)
from spatial_llava_ros.image_codec import encode_image  # noqa: E402
from spatial_llava_ros.msg import MarkArray, SpatialQuery, SpatialResult  # noqa: E402
from spatial_llava_ros.nodes.conversions import (  # noqa: E402
    bbox_to_box,
    fill_message,
    rgb_image_fields,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ros_launch_helpers as helpers  # noqa: E402
import test_launch_scene as scene  # noqa: E402

COLOR, DEPTH, INFO = '/test_camera/color', '/test_camera/depth', '/test_camera/camera_info'
MAX_FRAME_AGE = 1.5


@pytest.mark.launch_test
def generate_test_description():
    from spatial_llava_ros.model.tiny import make_tiny_model

    work = Path(tempfile.mkdtemp(prefix='spatial_llava_launch_'))
    model = make_tiny_model(work / 'tiny', seed=0)
    params = work / 'params.yaml'
    params.write_text(
        '/**/marker_node:\n  ros__parameters:\n    min_area: 20\n    max_frame_age: 1.0\n'
        '/**/resolver_node:\n  ros__parameters:\n'
        f'    standoff: {scene.STANDOFF}\n    max_frame_age: {MAX_FRAME_AGE}\n'
        '    tf_timeout: 0.3\n    nav_server_timeout: 1.0\n    target_frame: map\n'
        '    base_frame: base_link\n')
    bringup = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(str(
            Path(get_package_share_directory('spatial_llava_ros')) / 'launch' /
            'bringup.launch.py')),
        launch_arguments={'color_topic': COLOR, 'depth_topic': DEPTH,
                          'camera_info_topic': INFO, 'model_path': str(model),
                          'device': 'cpu', 'params_file': str(params),
                          'navigate': 'false'}.items())
    return launch.LaunchDescription([bringup, launch_testing.actions.ReadyToTest()]), {}


class TestBringup(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        rclpy.init()
        cls.node = rclpy.create_node('spatial_llava_test_robot')
        cls.frame = scene.render_scene()
        cls.color_pub = cls.node.create_publisher(Image, COLOR, 10)
        cls.depth_pub = cls.node.create_publisher(Image, DEPTH, 10)
        cls.info_pub = cls.node.create_publisher(CameraInfo, INFO, 10)
        cls.query_pub = cls.node.create_publisher(SpatialQuery, '/spatial_query', 10)
        cls.results, cls.goals, cls.marks = [], [], []
        cls.node.create_subscription(SpatialResult, '/spatial_result', cls.results.append, 10)
        cls.node.create_subscription(PoseStamped, '/goal_pose', cls.goals.append, 10)
        cls.node.create_subscription(MarkArray, '/marks', cls.marks.append, 10)
        cls.tf = StaticTransformBroadcaster(cls.node)
        msgs = []
        for (parent, child), m in scene.scene_transforms().items():
            t, q = transform_to_translation_quaternion(m)
            msg = TransformStamped()
            msg.header.stamp = cls.node.get_clock().now().to_msg()
            msg.header.frame_id, msg.child_frame_id = parent, child
            msg.transform.translation.x, msg.transform.translation.y, \
                msg.transform.translation.z = (float(v) for v in t)
            (msg.transform.rotation.x, msg.transform.rotation.y, msg.transform.rotation.z,
             msg.transform.rotation.w) = (float(v) for v in q)
            msgs.append(msg)
        cls.tf.sendTransform(msgs)

    @classmethod
    def tearDownClass(cls):
        cls.node.destroy_node()
        rclpy.shutdown()

    # ---- helpers ------------------------------------------------------------------------

    def spin_until(self, done, timeout: float, publish=None) -> bool:
        return helpers.spin_until(self.node, done, timeout, publish)

    def publish_frame(self, frame_id: str = scene.OPTICAL, depth: np.ndarray | None = None):
        f = self.frame
        stamp = self.node.get_clock().now().to_msg()
        color = fill_message(Image(), rgb_image_fields(f.rgb))
        d = (f.depth if depth is None else depth).astype(np.float32)
        data, step = encode_image(d, '32FC1')
        depth_msg = fill_message(Image(), {'height': d.shape[0], 'width': d.shape[1],
                                           'encoding': '32FC1', 'is_bigendian': 0,
                                           'step': step, 'data': data})
        info = CameraInfo()
        info.width, info.height = f.intrinsics.width, f.intrinsics.height
        k = f.intrinsics
        info.k = [k.fx, 0.0, k.cx, 0.0, k.fy, k.cy, 0.0, 0.0, 1.0]
        info.p = [k.fx, 0.0, k.cx, 0.0, 0.0, k.fy, k.cy, 0.0, 0.0, 0.0, 1.0, 0.0]
        info.distortion_model = 'plumb_bob'
        info.d = [0.0] * 5
        for msg in (color, depth_msg, info):
            msg.header.stamp = stamp
            msg.header.frame_id = frame_id
        self.color_pub.publish(color)
        self.depth_pub.publish(depth_msg)
        self.info_pub.publish(info)

    def query(self, text: str, action: int = SpatialQuery.NAVIGATE) -> SpatialResult:
        msg = SpatialQuery()
        msg.header.stamp = self.node.get_clock().now().to_msg()
        msg.text, msg.action = text, action
        before = len(self.results)
        self.query_pub.publish(msg)
        ok = self.spin_until(lambda: any(r.query == text for r in self.results[before:]), 30.0)
        self.assertTrue(ok, f'no SpatialResult for {text!r} within 30 s')
        return next(r for r in self.results[before:] if r.query == text)

    def wait_for_marks(self, frame_id: str, with_centroids: bool | None = None, depth=None):
        """Publish frames until three marked frames of this kind came back, so the resolver
        (which pairs marked_image and marks itself) has surely received one too."""
        start = len(self.marks)

        def matches(m) -> bool:
            if m.header.frame_id != frame_id or not m.marks:
                return False
            return with_centroids is None or all(k.has_centroid == with_centroids
                                                 for k in m.marks)

        def seen():
            return sum(matches(m) for m in self.marks[start:]) >= 3
        ok = self.spin_until(seen, 30.0, publish=lambda: self.publish_frame(frame_id, depth))
        self.assertTrue(ok, f'no MarkArray in {frame_id} within 30 s')

    def assert_active(self):
        self.assertEqual(helpers.lifecycle_state(self.node, timeout=10.0), 'active')

    def wait_active(self):
        if not helpers.wait_for_state(self.node, 'active', timeout=120.0):
            self.fail('resolver_node did not become active within 120 s')

    # ---- cases (run in name order) -----------------------------------------------------

    def test_1_query_before_any_frame(self):
        self.wait_active()
        result = self.query('the red box before any frame')
        self.assertFalse(result.success)
        self.assertTrue(result.reason.startswith('no_frame'), result.reason)
        self.assert_active()

    def test_2_goal_within_5cm_of_the_ground_truth_standoff(self):
        self.wait_for_marks(scene.OPTICAL, with_centroids=True)
        goals_before = len(self.goals)
        result = self.query('the red box left of the blue box')
        self.assertTrue(result.success, result.reason)
        self.assertEqual(result.header.frame_id, 'map')
        self.assertTrue(self.spin_until(lambda: len(self.goals) > goals_before, 5.0))
        goal = self.goals[-1]
        self.assertEqual(goal.header.frame_id, 'map')
        got = np.array([goal.pose.position.x, goal.pose.position.y, goal.pose.position.z])
        b = result.box
        box = bbox_to_box(b.center.position.x, b.center.position.y, b.size_x, b.size_y)
        instance = scene.object_in_box(self.frame, box)
        self.assertGreater(instance, 0, f'mark {result.mark_id} box {box} is not an object')
        expected = scene.expected_goal(self.frame, instance)
        err = float(np.linalg.norm(got - expected))
        self.assertLess(err, scene.TOLERANCE, f'goal {got} vs expected {expected}: {err:.3f} m')
        self.assertAlmostEqual(result.goal_pose.pose.position.x, goal.pose.position.x)
        self.assertAlmostEqual(sum(result.scores), 1.0, places=3)
        self.assert_active()

    def test_3_stale_frame(self):
        time.sleep(MAX_FRAME_AGE + 0.5)  # no new frames meanwhile
        result = self.query('the red box on an old frame')
        self.assertFalse(result.success)
        self.assertTrue(result.reason.startswith('stale_frame'), result.reason)
        self.assert_active()

    def test_4_missing_transform(self):
        self.wait_for_marks('camera_without_tf', with_centroids=True)
        result = self.query('the red box without tf')
        self.assertFalse(result.success)
        self.assertTrue(result.reason.startswith('no_transform'), result.reason)
        self.assert_active()

    def test_5_target_without_depth(self):
        no_depth = np.full(self.frame.depth.shape, np.nan, np.float32)
        self.wait_for_marks(scene.OPTICAL, with_centroids=False, depth=no_depth)
        result = self.query('the red box without depth')
        self.assertFalse(result.success)
        self.assertTrue(result.reason.startswith('no_depth'), result.reason)
        self.assert_active()

    def test_6_absent_nav2_server(self):
        self.wait_for_marks(scene.OPTICAL, with_centroids=True)
        client = ActionClient(self.node, ResolveSpatialQuery, '/resolve_spatial_query')
        self.assertTrue(client.wait_for_server(timeout_sec=10.0))
        goal = ResolveSpatialQuery.Goal()
        goal.text, goal.action, goal.navigate = 'the blue box', SpatialQuery.NAVIGATE, True
        feedback = []
        sent = client.send_goal_async(goal, feedback_callback=feedback.append)
        self.assertTrue(self.spin_until(sent.done, 10.0, publish=self.publish_frame))
        handle = sent.result()
        self.assertTrue(handle.accepted)
        result_future = handle.get_result_async()
        self.assertTrue(self.spin_until(result_future.done, 30.0, publish=self.publish_frame))
        result = result_future.result().result.result
        self.assertFalse(result.success)
        self.assertTrue(result.reason.startswith('nav_unavailable'), result.reason)
        self.assertGreater(result.mark_id, 0)  # resolved and located before Nav2 failed
        self.assertTrue(any(f.feedback.stage == 'navigating' for f in feedback))
        self.assert_active()


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    def test_nodes_exit_cleanly(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info, allowable_exit_codes=[0, -2, -15])
