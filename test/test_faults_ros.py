"""Faults injected into the real resolver node under ROS 2 (rclpy), in-process.

CANNOT RUN ON THE DEVELOPMENT MACHINE (no ROS 2 there): skipped with a reason where rclpy,
the generated interfaces or nav2_msgs are missing. Uses the harness of test_flood_ros.py.

Each fault must give a clear result and leave the node serving the next query:
- model_path missing: configure FAILURE, node stays unconfigured;
- truncated safetensors: activate FAILURE (ModelLoadError logged), node inactive; after the
  file is repaired a second activate succeeds and queries are answered;
- Nav2 goal rejected: ResolveSpatialQuery result ``nav_rejected``;
- Nav2 goal aborted: ``nav_failed: ... ABORTED (error_code ...)`` and nav_status 6;
- camera stops publishing: ``stale_frame``; tf missing: ``no_transform``;
- the worker raising (resolver patched to raise RuntimeError): ``internal_error``;
- CUDA OOM (resolver patched to raise torch.OutOfMemoryError - a test double, the
  allocator cannot fail on demand): a failed result naming OutOfMemoryError (the node does
  not wrap its resolver in reliability.oom.OomFallbackResolver; see docs/reliability.md).
"""

from __future__ import annotations

import shutil
import time

import pytest

rclpy = pytest.importorskip('rclpy', reason='node fault tests need ROS 2 (rclpy); run them '
                            'in a sourced colcon workspace')
pytest.importorskip('spatial_llava_ros.msg', reason='the generated interfaces are missing: '
                    'colcon build the package first')
pytest.importorskip('nav2_msgs', reason='the resolver node needs nav2_msgs')

from nav2_msgs.action import NavigateToPose  # noqa: E402
from rclpy.action import ActionClient, ActionServer, GoalResponse  # noqa: E402
from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402
from test_flood_ros import Harness, assets, harness, running  # noqa: E402,F401 - fixtures

from spatial_llava_ros.action import ResolveSpatialQuery  # noqa: E402
from spatial_llava_ros.msg import SpatialQuery  # noqa: E402

pytestmark = pytest.mark.ros


def run_goal(h: Harness, text: str, timeout: float = 30.0):
    client = ActionClient(h.robot, ResolveSpatialQuery, 'resolve_spatial_query')
    assert client.wait_for_server(timeout_sec=10.0)
    goal = ResolveSpatialQuery.Goal()
    goal.text, goal.action, goal.navigate = text, SpatialQuery.NAVIGATE, True
    sent = client.send_goal_async(goal)
    end = time.monotonic() + timeout
    while not sent.done() and time.monotonic() < end:
        time.sleep(0.05)
    handle = sent.result()
    assert handle.accepted
    result = handle.get_result_async()
    while not result.done() and time.monotonic() < end:
        time.sleep(0.05)
    assert result.done(), f'no ResolveSpatialQuery result for {text!r}'
    client.destroy()
    return result.result().result


def fake_nav2(h: Harness, accept: bool, error_code: int = 0):
    """A NavigateToPose server on the robot node that rejects, or accepts then aborts."""
    def on_goal(_):
        return GoalResponse.ACCEPT if accept else GoalResponse.REJECT

    def execute(goal_handle):
        goal_handle.abort()
        res = NavigateToPose.Result()
        if hasattr(res, 'error_code'):  # Jazzy and later
            res.error_code = error_code
            res.error_msg = 'no valid path (test double)'
        return res

    return ActionServer(h.robot, NavigateToPose, 'navigate_to_pose', execute_callback=execute,
                        goal_callback=on_goal)


def test_missing_model_dir_fails_configure(assets, tmp_path):  # noqa: F811
    rclpy.init()
    h = Harness(tmp_path / 'nowhere')
    try:
        assert h.node.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert h.state() == 'unconfigured'
    finally:
        h.close()
        rclpy.shutdown()


def test_truncated_weights_fail_activate_then_repair_serves(assets, tmp_path):  # noqa: F811
    model, frame, marked = assets
    bad = tmp_path / 'model'
    shutil.copytree(model, bad)
    (weights,) = bad.glob('*.safetensors')
    good = weights.read_bytes()
    weights.write_bytes(good[: len(good) // 2])
    rclpy.init()
    h = Harness(bad)
    try:
        assert h.node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert h.node.trigger_activate() == TransitionCallbackReturn.FAILURE
        assert h.state() == 'inactive'
        weights.write_bytes(good)
        assert h.node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        h.send_tf(frame.camera_pose)
        h.publish_marked(marked)
        time.sleep(0.5)
        assert h.ask('the chair after repair').success
    finally:
        h.close()
        rclpy.shutdown()


def test_nav2_rejects_the_goal(harness):  # noqa: F811
    server = fake_nav2(harness, accept=False)
    try:
        result = run_goal(harness, 'the chair, nav2 rejects').result
        assert not result.success and result.reason.startswith('nav_rejected'), result.reason
        assert harness.ask('the chair after a rejection').success
    finally:
        server.destroy()


def test_nav2_aborts_the_goal(harness):  # noqa: F811
    server = fake_nav2(harness, accept=True, error_code=104)
    try:
        out = run_goal(harness, 'the chair, nav2 aborts')
        assert out.nav_status == 6
        assert out.result.reason.startswith('nav_failed: Nav2 NavigateToPose finished ABORTED')
        assert harness.ask('the chair after an abort').success
    finally:
        server.destroy()


def test_stale_frame_then_tf_missing_then_recovers(assets):  # noqa: F811
    _, _, marked = assets
    with running(assets, max_frame_age=0.5) as h:
        time.sleep(1.0)  # the camera went quiet
        assert h.ask('the chair on an old frame').reason.startswith('stale_frame')
        h.publish_marked(marked, frame_id='camera_without_tf')
        time.sleep(0.3)
        assert h.ask('the chair without tf').reason.startswith('no_transform')
        h.publish_marked(marked)
        time.sleep(0.3)
        assert h.ask('the chair on a fresh frame').success


@pytest.mark.parametrize('exc_name', ['RuntimeError', 'OutOfMemoryError'])
def test_worker_exception_is_reported_and_node_serves(harness, exc_name):  # noqa: F811
    import torch

    exc = RuntimeError('boom (test double)') if exc_name == 'RuntimeError' else \
        getattr(torch, 'OutOfMemoryError', torch.cuda.OutOfMemoryError)('CUDA out of memory '
                                                                         '(test double)')
    resolver = harness.node._resolver
    original = resolver.score

    def raising(*args, **kwargs):
        raise exc

    resolver.score = raising
    try:
        out = harness.ask(f'the chair, worker raises {exc_name}')
    finally:
        resolver.score = original
    assert not out.success and exc_name in out.reason, out.reason
    assert harness.state() == 'active'
    assert harness.ask(f'the chair after {exc_name}').success
