"""The resolver node against a NavigateToPose server, in-process with real rclpy (skipped
without ROS 2). The server here is a stand-in for Nav2 with a scripted behaviour (succeed
with feedback, reject, abort); the resolver, its action server, tf2 and the marked frames
are the real ones. Checks: goal sent in `map` equals /goal_pose, Nav2 feedback relayed,
success / rejection / failure reported in the ResolveSpatialQuery result."""

from __future__ import annotations

import math
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip('rclpy', reason='needs ROS 2 (rclpy)')
pytest.importorskip('spatial_llava_ros.msg', reason='the generated interfaces are missing: '
                    'colcon build the package first')
pytest.importorskip('tf2_ros', reason='needs tf2_ros')
pytest.importorskip('nav2_msgs', reason='needs nav2_msgs')

from geometry_msgs.msg import PoseStamped, TransformStamped  # noqa: E402
from nav2_msgs.action import NavigateToPose  # noqa: E402
from rclpy.action import ActionClient, ActionServer, GoalResponse  # noqa: E402
from rclpy.callback_groups import ReentrantCallbackGroup  # noqa: E402
from rclpy.executors import MultiThreadedExecutor  # noqa: E402
from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from tf2_ros import StaticTransformBroadcaster  # noqa: E402

from spatial_llava_ros.action import ResolveSpatialQuery  # noqa: E402
from spatial_llava_ros.geometry.transforms import (  # noqa: E402
    transform_to_translation_quaternion,
)
from spatial_llava_ros.msg import Mark, MarkArray, SpatialQuery, SpatialResult  # noqa: E402
from spatial_llava_ros.nodes.conversions import (  # noqa: E402
    fill_message,
    mark_fields,
    rgb_image_fields,
)
from spatial_llava_ros.nodes.resolver_node import ResolverNode  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import test_launch_scene as scene  # noqa: E402

NAMESPACE = 'nav2_test'  # keeps these nodes' services apart from launched ones


class Nav2StandIn:
    """A NavigateToPose server whose answer the test chooses."""

    def __init__(self, node):
        self.mode = 'succeed'
        self.goals: list = []
        self.server = ActionServer(node, NavigateToPose, 'navigate_to_pose',
                                   execute_callback=self._execute,
                                   goal_callback=self._on_goal,
                                   callback_group=ReentrantCallbackGroup())

    def _on_goal(self, goal):
        self.goals.append(goal.pose)
        return GoalResponse.REJECT if self.mode == 'reject' else GoalResponse.ACCEPT

    def _execute(self, handle):
        for remaining in (2.0, 1.0):
            fb = NavigateToPose.Feedback()
            fb.distance_remaining = remaining
            handle.publish_feedback(fb)
            time.sleep(0.1)
        result = NavigateToPose.Result()
        if self.mode == 'abort':
            if hasattr(result, 'error_code'):  # Jazzy and later
                result.error_code, result.error_msg = 9000, 'stand-in failure'
            handle.abort()
        else:
            handle.succeed()
        return result


@pytest.fixture(scope='module')
def system(tmp_path_factory):
    from spatial_llava_ros.marks.engine import MarkEngine, MarkerConfig
    from spatial_llava_ros.model.tiny import make_tiny_model

    context = rclpy.Context()  # private: launch tests later in this process use the default
    rclpy.init(context=context)
    model = make_tiny_model(tmp_path_factory.mktemp('tiny'), seed=0)
    node = ResolverNode(parameter_overrides=[
        Parameter('model_path', value=str(model)), Parameter('device', value='cpu'),
        Parameter('max_frame_age', value=0.0), Parameter('nav_server_timeout', value=2.0),
        Parameter('standoff', value=scene.STANDOFF), Parameter('query_queue_size', value=1)],
        context=context, namespace=NAMESPACE)
    robot = rclpy.create_node('nav2_test_robot', context=context, namespace=NAMESPACE)
    nav2 = Nav2StandIn(robot)
    goals: list[PoseStamped] = []
    robot.create_subscription(PoseStamped, 'goal_pose', goals.append, 10)
    results: list[SpatialResult] = []
    robot.create_subscription(SpatialResult, 'spatial_result', results.append, 100)
    answer_images: list[Image] = []
    robot.create_subscription(Image, 'answer_image', answer_images.append, 100)
    query_pub = robot.create_publisher(SpatialQuery, 'spatial_query', 100)
    executor = MultiThreadedExecutor(num_threads=6, context=context)
    executor.add_node(node)
    executor.add_node(robot)
    threading.Thread(target=executor.spin, daemon=True).start()
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS

    tf = StaticTransformBroadcaster(robot)
    msgs = []
    for (parent, child), m in scene.scene_transforms().items():
        t, q = transform_to_translation_quaternion(m)
        msg = TransformStamped()
        msg.header.frame_id, msg.child_frame_id = parent, child
        msg.transform.translation.x, msg.transform.translation.y, \
            msg.transform.translation.z = (float(v) for v in t)
        (msg.transform.rotation.x, msg.transform.rotation.y, msg.transform.rotation.z,
         msg.transform.rotation.w) = (float(v) for v in q)
        msgs.append(msg)
    tf.sendTransform(msgs)

    # one marked frame, published the way marker_node does
    frame = scene.render_scene()
    marked = MarkEngine(MarkerConfig(min_area=20)).process(frame.rgb, frame.depth,
                                                           frame.intrinsics)
    image_pub = robot.create_publisher(Image, 'marked_image', 10)
    marks_pub = robot.create_publisher(MarkArray, 'marks', 10)
    image = fill_message(Image(), rgb_image_fields(marked.image))
    image.header.stamp = robot.get_clock().now().to_msg()
    image.header.frame_id = scene.OPTICAL
    marks = MarkArray()
    marks.header = image.header
    marks.width, marks.height = frame.intrinsics.width, frame.intrinsics.height
    marks.marks = [fill_message(Mark(), mark_fields(m)) for m in marked.marks]
    deadline = time.monotonic() + 10.0
    while node._frames.latest() is None and time.monotonic() < deadline:
        image_pub.publish(image)
        marks_pub.publish(marks)
        time.sleep(0.2)
    assert node._frames.latest() is not None, 'the resolver never got the marked frame'
    client = ActionClient(robot, ResolveSpatialQuery, 'resolve_spatial_query')
    assert client.wait_for_server(timeout_sec=10.0)
    yield {'node': node, 'nav2': nav2, 'client': client, 'goals': goals, 'results': results,
           'query_pub': query_pub, 'answer_images': answer_images, 'image': image,
           'marked': marked}
    executor.shutdown()
    node.close()
    node.destroy_node()
    robot.destroy_node()
    rclpy.try_shutdown(context=context)


def _wait(future, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not future.done():
        assert time.monotonic() < deadline, 'timed out'
        time.sleep(0.05)
    return future.result()


def _resolve(system, text='the blue box'):
    goal = ResolveSpatialQuery.Goal()
    goal.text, goal.action, goal.navigate = text, SpatialQuery.NAVIGATE, True
    feedback = []
    handle = _wait(system['client'].send_goal_async(goal, feedback_callback=feedback.append))
    assert handle.accepted
    return _wait(handle.get_result_async()), [f.feedback for f in feedback]


def test_the_answered_frame_is_published_with_the_chosen_mark_boxed(system):
    system['nav2'].mode = 'succeed'
    before = len(system['answer_images'])
    result, _ = _resolve(system)
    assert result.result.result.success, result.result.result.reason
    deadline = time.monotonic() + 10.0
    while len(system['answer_images']) == before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(system['answer_images']) > before, 'no answer_image within 10 s'
    msg = system['answer_images'][-1]
    sent = system['image']
    assert (msg.width, msg.height, msg.encoding) == (sent.width, sent.height, 'rgb8')
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (sent.header.stamp.sec,
                                                                 sent.header.stamp.nanosec)
    assert msg.header.frame_id == scene.OPTICAL
    got = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.width, 3)
    chosen = system['marked'].mark(result.result.result.mark_id)
    x0, y0, _x1, y1 = chosen.box
    edge = got[(y0 + y1) // 2, x0]
    assert edge[1] > 200 and edge[0] < 80 and edge[2] < 80  # the green box on its edge


def test_navigation_succeeds_with_feedback_relayed(system):
    system['nav2'].mode = 'succeed'
    n_goals = len(system['nav2'].goals)
    response, feedback = _resolve(system)
    result = response.result.result
    assert result.success, result.reason
    assert response.result.nav_status == 4  # action_msgs/GoalStatus.STATUS_SUCCEEDED
    sent = system['nav2'].goals[n_goals]
    assert sent.header.frame_id == 'map'
    assert sent.pose.position.x == pytest.approx(result.goal_pose.pose.position.x)
    assert sent.pose.position.z == 0.0
    distances = [f.distance_remaining for f in feedback if f.stage == 'navigating'
                 and not math.isnan(f.distance_remaining)]
    assert distances[:2] == [2.0, 1.0]
    published = system['goals'][-1]
    assert np.isclose(published.pose.position.y, sent.pose.position.y)


def test_rejected_goal_is_reported(system):
    system['nav2'].mode = 'reject'
    response, _ = _resolve(system)
    result = response.result.result
    assert not result.success and result.reason.startswith('nav_rejected'), result.reason
    assert result.mark_id > 0


def test_aborted_navigation_is_reported(system):
    system['nav2'].mode = 'abort'
    response, _ = _resolve(system)
    result = response.result.result
    assert not result.success and result.reason.startswith('nav_failed'), result.reason
    assert 'ABORTED' in result.reason
    assert response.result.nav_status == 6  # STATUS_ABORTED


def test_a_flood_of_queries_gets_one_result_each_and_drops_the_oldest(system):
    """query_queue_size is 1 here: queries sent faster than the model answers are dropped,
    oldest first, and still answered (queue_full)."""
    texts = [f'the red box, query {i}' for i in range(12)]
    for text in texts:
        msg = SpatialQuery()
        msg.text, msg.action = text, SpatialQuery.LOCATE
        system['query_pub'].publish(msg)
    deadline = time.monotonic() + 60.0
    while time.monotonic() < deadline:
        answered = [r for r in system['results'] if r.query in texts]
        if len(answered) >= len(texts):
            break
        time.sleep(0.1)
    time.sleep(0.5)  # nothing answered twice
    answered = [r for r in system['results'] if r.query in texts]
    assert sorted(r.query for r in answered) == sorted(texts)
    dropped = [r for r in answered if r.reason.startswith('queue_full')]
    assert dropped and all(not r.success for r in dropped)
    assert answered[-1].query == texts[-1] and answered[-1].success  # the newest one ran
