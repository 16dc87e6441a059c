"""Floods against the real resolver node under ROS 2 (rclpy), in-process.

CANNOT RUN ON THE DEVELOPMENT MACHINE (no ROS 2 there): skipped with a reason where rclpy,
the generated interfaces or nav2_msgs are missing. Run in a sourced, built workspace:
``colcon test --packages-select spatial_llava_ros --pytest-args -k ros`` or
``python -m pytest test/test_flood_ros.py``.

The test process holds the ResolverNode (tiny random model on CPU, lifecycle driven by
``trigger_configure`` / ``trigger_activate``) and a "robot" node on one
MultiThreadedExecutor: the robot publishes a marked frame (marked_image + marks, as the
marker node does) and a static tf, then floods /spatial_query: 1,000 queries in a burst
and 50/s for 10 s. Checked: every query text gets exactly ONE SpatialResult (answered, or
``queue_full`` for the ones the node's bounded queue dropped), the node stays active, and
the process RSS after the flood is within a loose bound of RSS before.

What this test guards (see docs/ros.md, "Drop policy"): queries a burst brings faster than
the node reads them must not be overwritten in the DDS reader history before the node's
bounded queue sees them (they would get no result at all). With the query subscription at
KEEP_LAST depth 50, 946 of the 1,000 burst queries got no result; the node now subscribes
KEEP_ALL (and publishes results with a depth-1000 history), and all 1,000 are answered.
"""

from __future__ import annotations

import gc
import threading
import time
from contextlib import contextmanager

import numpy as np
import pytest

rclpy = pytest.importorskip('rclpy', reason='node floods need ROS 2 (rclpy); run them in a '
                            'sourced colcon workspace')
pytest.importorskip('spatial_llava_ros.msg', reason='the generated interfaces are missing: '
                    'colcon build the package first')
pytest.importorskip('nav2_msgs', reason='the resolver node needs nav2_msgs')

from geometry_msgs.msg import TransformStamped  # noqa: E402
from rclpy.executors import MultiThreadedExecutor  # noqa: E402
from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import (  # noqa: E402
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
)
from sensor_msgs.msg import Image  # noqa: E402
from tf2_ros import StaticTransformBroadcaster  # noqa: E402

from spatial_llava_ros.geometry.transforms import (  # noqa: E402
    transform_to_translation_quaternion,
)
from spatial_llava_ros.msg import Mark, MarkArray, SpatialQuery, SpatialResult  # noqa: E402
from spatial_llava_ros.nodes.conversions import (  # noqa: E402
    fill_message,
    mark_fields,
    rgb_image_fields,
)
from spatial_llava_ros.reliability.memory import rss_bytes  # noqa: E402

pytestmark = pytest.mark.ros

OPTICAL = 'camera_optical'
# The harness's nodes live in their own namespace and rclpy context. In the root namespace
# its in-process /resolver_node left /resolver_node/change_state in the DDS graph after the
# test, and test_launch_bringup / test_launch_replay, run later in the same pytest process,
# sent their configure request to that stale server ("Abandoning wait for the
# '/resolver_node/change_state' service response").
NAMESPACE = 'flood_test'
QUEUE = 8
ALL = QoSProfile(history=HistoryPolicy.KEEP_ALL, reliability=ReliabilityPolicy.RELIABLE,
                 durability=DurabilityPolicy.VOLATILE)
MARKED = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=2,
                    reliability=ReliabilityPolicy.RELIABLE,
                    durability=DurabilityPolicy.VOLATILE)


@pytest.fixture(scope='module')
def assets(tmp_path_factory):
    from spatial_llava_ros.marks.engine import mark_frame
    from spatial_llava_ros.model.tiny import make_tiny_model
    from spatial_llava_ros.scene.generate import generate_scene

    model = make_tiny_model(tmp_path_factory.mktemp('tiny'), seed=0)
    frame = generate_scene(3, 160, 120).frame
    marked = mark_frame(frame.rgb, frame.depth, frame.intrinsics)
    return model, frame, marked


class Harness:
    """ResolverNode + a robot node on one executor thread; see the module docstring."""

    def __init__(self, model_path, **params) -> None:
        from spatial_llava_ros.nodes.resolver_node import ResolverNode

        values = {'model_path': str(model_path), 'device': 'cpu', 'base_frame': '',
                  'target_frame': 'map', 'max_frame_age': 0.0, 'query_queue_size': QUEUE,
                  'tf_timeout': 0.2, 'nav_server_timeout': 1.0, **params}
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = ResolverNode(parameter_overrides=[Parameter(k, value=v)
                                                      for k, v in values.items()],
                                 context=self.context, namespace=NAMESPACE)
        self.robot = rclpy.create_node('reliability_robot', context=self.context,
                                       namespace=NAMESPACE)
        self.results: list = []
        self.lock = threading.Lock()
        self.robot.create_subscription(SpatialResult, 'spatial_result', self._on_result, ALL)
        self.query_pub = self.robot.create_publisher(SpatialQuery, 'spatial_query', ALL)
        self.image_pub = self.robot.create_publisher(Image, 'marked_image', MARKED)
        self.marks_pub = self.robot.create_publisher(MarkArray, 'marks', MARKED)
        self.tf = StaticTransformBroadcaster(self.robot)
        self.executor = MultiThreadedExecutor(num_threads=4, context=self.context)
        self.executor.add_node(self.node)
        self.executor.add_node(self.robot)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def _on_result(self, msg) -> None:
        with self.lock:
            self.results.append(msg)

    def activate(self) -> None:
        assert self.node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert self.node.trigger_activate() == TransitionCallbackReturn.SUCCESS

    def state(self) -> str:
        return self.node._state_machine.current_state[1]

    def send_tf(self, camera_pose: np.ndarray, child: str = OPTICAL) -> None:
        t, q = transform_to_translation_quaternion(camera_pose)
        msg = TransformStamped()
        msg.header.stamp = self.robot.get_clock().now().to_msg()
        msg.header.frame_id, msg.child_frame_id = 'map', child
        tr = msg.transform
        tr.translation.x, tr.translation.y, tr.translation.z = (float(v) for v in t)
        tr.rotation.x, tr.rotation.y, tr.rotation.z, tr.rotation.w = (float(v) for v in q)
        self.tf.sendTransform([msg])

    def publish_marked(self, marked, frame_id: str = OPTICAL) -> int:
        """Publish a marked frame now; returns its stamp (ns) for ``wait_frame``."""
        now = self.robot.get_clock().now()
        stamp = now.to_msg()
        image = fill_message(Image(), rgb_image_fields(marked.image))
        marks = MarkArray()
        marks.width, marks.height = marked.image.shape[1], marked.image.shape[0]
        marks.marks = [fill_message(Mark(), mark_fields(m)) for m in marked.marks]
        for msg in (image, marks):
            msg.header.stamp, msg.header.frame_id = stamp, frame_id
        self.image_pub.publish(image)
        self.marks_pub.publish(marks)
        return now.nanoseconds

    def wait_frame(self, stamp_ns: int, timeout: float = 30.0) -> None:
        """Until the resolver holds the frame stamped ``stamp_ns`` (no guessed sleep)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            latest = self.node._frames.latest() if self.node._frames is not None else None
            if latest is not None and latest.stamp_ns == stamp_ns:
                return
            time.sleep(0.02)
        raise AssertionError(f'the resolver never got the frame stamped {stamp_ns}')

    def fresh_frame(self, marked, timeout: float = 30.0) -> None:
        """Publish until one frame reaches the resolver (discovery may still be matching)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                return self.wait_frame(self.publish_marked(marked), timeout=0.25)
            except AssertionError:
                continue
        raise AssertionError(f'no marked frame reached the resolver in {timeout} s')

    def query(self, text: str, action: int = SpatialQuery.NAVIGATE) -> None:
        msg = SpatialQuery()
        msg.header.stamp = self.robot.get_clock().now().to_msg()
        msg.text, msg.action = text, action
        self.query_pub.publish(msg)

    def by_text(self) -> dict[str, list]:
        with self.lock:
            out: dict[str, list] = {}
            for r in self.results:
                out.setdefault(r.query, []).append(r)
            return out

    def wait_for(self, texts: list[str], timeout: float = 120.0, quiet: float = 15.0) -> dict:
        """Until every text has a result, or nothing new arrived for ``quiet`` seconds."""
        end, last_n, last_change = time.monotonic() + timeout, -1, time.monotonic()
        while time.monotonic() < end:
            got = self.by_text()
            if all(t in got for t in texts):
                return got
            n = len(self.results)
            if n != last_n:
                last_n, last_change = n, time.monotonic()
            elif time.monotonic() - last_change > quiet:
                break
            time.sleep(0.1)
        return self.by_text()

    def ask(self, text: str, timeout: float = 30.0):
        self.query(text)
        got = self.wait_for([text], timeout)
        assert text in got, f'no SpatialResult for {text!r}'
        return got[text][0]

    def close(self) -> None:
        self.node.close()
        self.executor.shutdown()
        self.node.destroy_node()
        self.robot.destroy_node()
        rclpy.try_shutdown(context=self.context)


@contextmanager
def running(assets, **params):
    """rclpy up, an active ResolverNode with tf and one marked frame; torn down after."""
    model, frame, marked = assets
    h = Harness(model, **params)
    try:
        h.send_tf(frame.camera_pose)
        h.activate()
        h.fresh_frame(marked)
        assert h.ask('warm up the chair').success
        yield h
    finally:
        h.close()


@pytest.fixture
def harness(assets):
    with running(assets) as h:
        yield h


def check_flood(h: Harness, texts: list[str]) -> dict:
    # A lost query shows as 15 s with nothing new (wait_for's quiet window); the overall limit
    # is only a backstop: after other tests set torch to 1 thread, a burst took 140 s here.
    got = h.wait_for(texts, timeout=600.0)
    missing = [t for t in texts if t not in got]
    twice = [t for t in texts if len(got.get(t, [])) > 1]
    assert not missing, f'{len(missing)} of {len(texts)} queries got no SpatialResult ' \
        f'(first: {missing[:3]})'
    assert not twice, f'{len(twice)} queries got more than one result'
    dropped = [t for t in texts if got[t][0].reason.startswith('queue_full')]
    answered = [t for t in texts if t not in set(dropped)]
    for t in answered:
        assert got[t][0].success, got[t][0].reason
    assert h.state() == 'active'
    return {'answered': len(answered), 'dropped': len(dropped)}


def test_burst_of_1000_queries_each_gets_one_result(harness, assets):
    gc.collect()
    before = rss_bytes()
    texts = [f'burst query {i}' for i in range(1000)]
    for t in texts:
        harness.query(t)
    counts = check_flood(harness, texts)
    print(f'burst of {len(texts)}: {counts}')  # shown with pytest -s
    assert counts['answered'] >= QUEUE and counts['dropped'] > 0
    gc.collect()
    assert rss_bytes() - before < 128 * 2**20


def test_sustained_50_per_second_each_gets_one_result(harness, assets):
    _, _, marked = assets
    texts = [f'sustained query {i}' for i in range(500)]
    t0 = time.monotonic()
    for i, t in enumerate(texts):
        if i % 10 == 0:
            harness.publish_marked(marked)  # the camera keeps going at 5 Hz
        delay = t0 + i / 50.0 - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        harness.query(t)
    print(f'50/s for 10 s: {check_flood(harness, texts)}')  # shown with pytest -s
