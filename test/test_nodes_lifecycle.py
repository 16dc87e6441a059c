"""The resolver node's lifecycle in-process with real rclpy (skipped without ROS 2):
a missing model (a path that is not a directory, or '' when the package ships no model) is
a FAILURE transition with the node still alive, '' loads the shipped model, and
configure -> activate -> deactivate -> cleanup -> configure -> activate works, with the
model loaded only while active and a query answered in between."""

from __future__ import annotations

import threading
import time

import pytest

rclpy = pytest.importorskip('rclpy', reason='needs ROS 2 (rclpy)')
pytest.importorskip('spatial_llava_ros.msg', reason='the generated interfaces are missing: '
                    'colcon build the package first')
pytest.importorskip('tf2_ros', reason='needs tf2_ros')

from rclpy.executors import MultiThreadedExecutor  # noqa: E402
from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402

from spatial_llava_ros.msg import SpatialQuery, SpatialResult  # noqa: E402
from spatial_llava_ros.nodes.resolver_node import ResolverNode  # noqa: E402


@pytest.fixture
def ros():
    """A private rclpy context: the default one stays untouched for launch tests that run
    later in the same pytest process."""
    context = rclpy.Context()
    rclpy.init(context=context)
    yield context
    rclpy.try_shutdown(context=context)


@pytest.fixture(scope='module')
def tiny_model(tmp_path_factory):
    from spatial_llava_ros.model.tiny import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp('tiny'), seed=0)


NAMESPACE = 'lifecycle_test'  # keeps these nodes' services apart from launched ones


def _node(context, **params) -> ResolverNode:
    overrides = [Parameter(k, value=v) for k, v in params.items()]
    return ResolverNode(parameter_overrides=overrides, context=context, namespace=NAMESPACE)


class LogRecorder:
    """Stands in for the node's logger so a test can read what configure said."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def __getattr__(self, level: str):
        return lambda msg, **_: self.lines.append((level, str(msg)))


@pytest.mark.parametrize('path', ['/nonexistent/spatial-llava', 'no_shipped_model'])
def test_missing_model_is_a_failure_transition(ros, path, tmp_path, monkeypatch):
    from spatial_llava_ros import paths

    if path == 'no_shipped_model':  # '' = the shipped model; here the package has none
        monkeypatch.setattr(paths, 'DEFAULT_MODEL_DIR', tmp_path / 'default_model')
        path = ''
    node = _node(ros, model_path=path)
    log = LogRecorder()
    monkeypatch.setattr(node, 'get_logger', lambda: log)
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert node._state_machine.current_state[1] == 'unconfigured'
        errors = [m for level, m in log.lines if level == 'error']
        expected = (f'no shipped model at {tmp_path / "default_model"}' if not path
                    else f"model_path '{path}' is not a directory")
        assert errors and expected in errors[0], log.lines
        # the node is still usable: fix the parameter and nothing else is needed
        assert node.get_parameter('model_path').value == path
    finally:
        node.destroy_node()


def test_empty_model_path_loads_the_shipped_model(ros):
    from spatial_llava_ros import paths
    from spatial_llava_ros.reliability.oom import OomFallbackResolver

    if not (paths.DEFAULT_MODEL_DIR / 'config.json').is_file():
        pytest.skip(f'this install ships no model at {paths.DEFAULT_MODEL_DIR}')
    node = _node(ros, model_path='', device='cpu')
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node._model_dir == paths.DEFAULT_MODEL_DIR
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        assert isinstance(node._resolver, OomFallbackResolver)
        assert str(node._resolver.device) == 'cpu'
        assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
        assert node._resolver is None
    finally:
        node.close()
        node.destroy_node()


def test_full_lifecycle_cycle_answers_a_query_and_frees_the_model(ros, tiny_model):
    node = _node(ros, model_path=str(tiny_model), device='cpu')
    client = rclpy.create_node('lifecycle_test_client', context=ros, namespace=NAMESPACE)
    executor = MultiThreadedExecutor(num_threads=4, context=ros)
    executor.add_node(node)
    executor.add_node(client)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    results: list[SpatialResult] = []
    client.create_subscription(SpatialResult, 'spatial_result', results.append, 10)
    pub = client.create_publisher(SpatialQuery, 'spatial_query', 10)
    try:
        for _ in range(2):  # twice: cleanup must leave a node that configures again
            assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
            assert node._resolver is None  # not loaded before activate
            assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
            assert node._resolver is not None
            before = len(results)
            deadline = time.monotonic() + 20.0
            while len(results) == before and time.monotonic() < deadline:
                msg = SpatialQuery()
                msg.text = 'the chair'
                pub.publish(msg)
                time.sleep(0.3)
            assert len(results) > before, 'no SpatialResult within 20 s'
            assert not results[-1].success and results[-1].reason.startswith('no_frame')
            assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
            assert node._resolver is None
            assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
    finally:
        executor.shutdown()
        node.close()
        node.destroy_node()
        client.destroy_node()


def _spin_until(context, node, done, timeout: float = 120.0) -> None:
    executor = MultiThreadedExecutor(num_threads=2, context=context)
    executor.add_node(node)
    end = time.monotonic() + timeout
    try:
        while time.monotonic() < end and not done():
            executor.spin_once(timeout_sec=0.1)
    finally:
        executor.shutdown()


@pytest.mark.parametrize('use_sim_time', [False, True])
def test_autostart_drives_the_node_to_active_once_it_spins(ros, tiny_model, use_sim_time):
    """bringup.launch.py's autostart: configure then activate from the node itself, also
    under use_sim_time with no /clock (the steady-clock timer still fires)."""
    node = _node(ros, model_path=str(tiny_model), autostart=True, use_sim_time=use_sim_time)
    try:
        assert node._state_machine.current_state[1] == 'unconfigured'  # not before it spins
        _spin_until(ros, node, lambda: node._state_machine.current_state[1] == 'active')
        assert node._state_machine.current_state[1] == 'active'
        assert node._resolver is not None
    finally:
        node.close()
        node.destroy_node()


def test_autostart_stops_at_a_failed_configure(ros):
    node = _node(ros, model_path='/nonexistent/spatial-llava', autostart=True)
    try:
        _spin_until(ros, node, lambda: node._autostart_timer is None, timeout=30.0)
        assert node._autostart_timer is None  # it ran, once
        assert node._state_machine.current_state[1] == 'unconfigured'
    finally:
        node.close()
        node.destroy_node()


def test_without_autostart_the_node_waits_for_configure(ros, tiny_model):
    node = _node(ros, model_path=str(tiny_model))
    try:
        _spin_until(ros, node, lambda: False, timeout=0.5)
        assert node._state_machine.current_state[1] == 'unconfigured'
    finally:
        node.close()
        node.destroy_node()
