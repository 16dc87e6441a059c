"""Two resolver nodes, in two namespaces, share one served model (backend: remote).

CANNOT RUN ON THE DEVELOPMENT MACHINE (no ROS 2 there): skipped with a reason where rclpy,
the generated interfaces, nav2_msgs or the serve extra are missing. Run in a sourced, built
workspace: ``python -m pytest test/test_remote_fleet_ros.py``.

One real ``transformers serve`` process on 127.0.0.1 serves the shipped model. Two
ResolverNodes (``/robot1``, ``/robot2``, ``backend: remote``, ``max_in_flight: 2``) each see
their own marked frame (different scenes, different marks, their own camera frame in tf) and
get queries on their own ``spatial_query`` at the same time. Checked: each node publishes one
SpatialResult per query on its own ``spatial_result``, ranked over its own frame's marks,
with the mark and probabilities that the local resolver gives on that frame.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

rclpy = pytest.importorskip('rclpy', reason='fleet test needs ROS 2 (rclpy); run it in a '
                            'sourced colcon workspace')
pytest.importorskip('spatial_llava_ros.msg', reason='the generated interfaces are missing: '
                    'colcon build the package first')
pytest.importorskip('nav2_msgs', reason='the resolver node needs nav2_msgs')
pytest.importorskip('openai', reason="the remote backend needs the 'serve' extra")

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
from serve_helpers import ServeProcess, serve_missing  # noqa: E402
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

pytestmark = [pytest.mark.ros,
              pytest.mark.skipif(serve_missing() is not None, reason=str(serve_missing()))]

ALL = QoSProfile(history=HistoryPolicy.KEEP_ALL, reliability=ReliabilityPolicy.RELIABLE,
                 durability=DurabilityPolicy.VOLATILE)
MARKED = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=2,
                    reliability=ReliabilityPolicy.RELIABLE,
                    durability=DurabilityPolicy.VOLATILE)
ROBOTS = ('robot1', 'robot2')
TOL = 1e-4


def _frames(model_dir):
    """Two marked scenes with marks 1-9 only and different mark sets, with their queries."""
    from spatial_llava_ros.training.synthetic import SomSettings, marked_scene

    settings = SomSettings.for_model(model_dir)
    out = []
    for seed in range(300):
        ms = marked_scene(seed, settings, max_expressions=3, keep=True)
        if ms.queries and max(ms.mark_ids) <= 9 and all(
                sorted(ms.mark_ids) != sorted(o.mark_ids) for o in out):
            out.append(ms)
        if len(out) == 2:
            return out
    pytest.fail('no two synthetic scenes with marks 1-9 and different marks')


def test_two_namespaces_share_one_server_and_get_their_own_answers(tmp_path):
    import dataclasses

    from spatial_llava_ros.model.resolver import Resolver
    from spatial_llava_ros.nodes.resolver_node import ResolverNode
    from spatial_llava_ros.paths import model_dir

    shipped = model_dir(None)
    scenes = dict(zip(ROBOTS, _frames(shipped)))
    server = ServeProcess(shipped, log_path=tmp_path / 'serve.log').start()
    rclpy.init()
    nodes, results, lock = {}, {r: [] for r in ROBOTS}, threading.Lock()
    executor = MultiThreadedExecutor(num_threads=6)
    robot = rclpy.create_node('fleet_robots')
    try:
        tf = StaticTransformBroadcaster(robot)
        pubs = {}
        for name in ROBOTS:
            params = {'backend': 'remote', 'server_url': server.url,
                      'server_model': str(shipped), 'timeout': 120.0, 'max_in_flight': 2,
                      'base_frame': '', 'max_frame_age': 0.0, 'query_queue_size': 8}
            nodes[name] = ResolverNode(namespace=name, parameter_overrides=[
                Parameter(k, value=v) for k, v in params.items()])
            robot.create_subscription(
                SpatialResult, f'/{name}/spatial_result',
                lambda msg, n=name: (lock.acquire(), results[n].append(msg), lock.release()),
                ALL)
            pubs[name] = (robot.create_publisher(SpatialQuery, f'/{name}/spatial_query', ALL),
                          robot.create_publisher(Image, f'/{name}/marked_image', MARKED),
                          robot.create_publisher(MarkArray, f'/{name}/marks', MARKED))
            executor.add_node(nodes[name])
        executor.add_node(robot)
        threading.Thread(target=executor.spin, daemon=True).start()
        tfs = []
        for name in ROBOTS:
            t, q = transform_to_translation_quaternion(scenes[name].scene.frame.camera_pose)
            msg = TransformStamped()
            msg.header.stamp = robot.get_clock().now().to_msg()
            msg.header.frame_id, msg.child_frame_id = 'map', f'{name}/camera_optical'
            tr = msg.transform
            tr.translation.x, tr.translation.y, tr.translation.z = (float(v) for v in t)
            tr.rotation.x, tr.rotation.y, tr.rotation.z, tr.rotation.w = (float(v) for v in q)
            tfs.append(msg)
        tf.sendTransform(tfs)
        for node in nodes.values():
            assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
            assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS

        def publish_frames():
            stamp = robot.get_clock().now().to_msg()
            for name in ROBOTS:
                marked = scenes[name].marked
                image = fill_message(Image(), rgb_image_fields(marked.image))
                marks = MarkArray()
                marks.width, marks.height = marked.image.shape[1], marked.image.shape[0]
                marks.marks = [fill_message(Mark(), mark_fields(m)) for m in marked.marks]
                for msg in (image, marks):
                    msg.header.stamp = stamp
                    msg.header.frame_id = f'{name}/camera_optical'
                pubs[name][1].publish(image)
                pubs[name][2].publish(marks)

        publish_frames()
        time.sleep(1.0)  # discovery
        publish_frames()
        time.sleep(0.5)
        asked = {name: [q for q, _, _ in scenes[name].queries] for name in ROBOTS}
        for i in range(max(len(v) for v in asked.values())):  # interleaved, both at once
            for name in ROBOTS:
                if i < len(asked[name]):
                    msg = SpatialQuery()
                    msg.text, msg.action = asked[name][i], SpatialQuery.LOCATE
                    pubs[name][0].publish(msg)
        end = time.monotonic() + 300
        while time.monotonic() < end:
            with lock:
                if all(len(results[n]) >= len(asked[n]) for n in ROBOTS):
                    break
            time.sleep(0.2)
        time.sleep(1.0)  # nothing extra may arrive
    finally:
        for node in nodes.values():
            node.close()
        executor.shutdown()
        for node in nodes.values():
            node.destroy_node()
        robot.destroy_node()
        rclpy.shutdown()
        server.stop()

    local = Resolver.from_pretrained(shipped, device='cpu', dtype='float32')
    first_token = Resolver(local.loaded, dataclasses.replace(local.template, score_eos=False))
    for name in ROBOTS:
        ms = scenes[name]
        got = {r.query: r for r in results[name]}
        assert sorted(got) == sorted(asked[name]), (name, [r.query for r in results[name]])
        assert len(results[name]) == len(asked[name]), f'{name}: a query answered twice'
        for text in asked[name]:
            res = got[text]
            assert res.success, (name, text, res.reason)
            assert sorted(res.mark_ids) == sorted(ms.mark_ids), (name, list(res.mark_ids))
            assert res.target_point_camera.header.frame_id == f'{name}/camera_optical'
            want = first_token.score(ms.image, ms.mark_ids, text)
            assert res.mark_id == want.best_id
            p = dict(zip(res.mark_ids, res.scores))
            assert max(abs(p[m] - want.scores[m]) for m in ms.mark_ids) < TOL
            assert np.isfinite(res.confidence)
