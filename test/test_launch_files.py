"""The launch files without ROS: they parse, declare the issue's arguments, start only
executables that CMakeLists installs, and replay's topics are the synthetic bag's.
With ROS 2 installed, bringup's description is also built for real."""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BRINGUP = ROOT / 'launch' / 'bringup.launch.py'
REPLAY = ROOT / 'launch' / 'replay.launch.py'


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding='utf-8'), filename=str(path))


def _table(path: Path, name: str):
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f'{path.name} has no {name} table')


def _bringup_arguments() -> dict[str, str]:
    return {name: default for name, default, _ in _table(BRINGUP, 'ARGUMENTS')}


def _string_kwargs(path: Path, key: str) -> set[str]:
    out = set()
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.keyword) and node.arg == key and \
                isinstance(node.value, ast.Constant):
            out.add(node.value.value)
    return out


def _replay_defaults() -> dict[str, str]:
    """replay's own arguments, then those it passes on with bringup's defaults."""
    out = {name: default for name, default, _ in _table(REPLAY, 'ARGUMENTS')}
    bringup = _bringup_arguments()
    out.update({name: bringup[name] for name in _table(REPLAY, 'PASSED')})
    return out


def test_bringup_declares_the_issue_arguments():
    args = _bringup_arguments()
    for name in ('namespace', 'color_topic', 'depth_topic', 'camera_info_topic', 'model_path',
                 'device', 'use_depth', 'use_speech', 'navigate', 'params_file'):
        assert name in args, name
    assert args['navigate'] == 'false' and args['use_speech'] == 'false'
    assert args['use_depth'] == 'true'


def test_launched_executables_are_installed_by_cmake():
    cmake = (ROOT / 'CMakeLists.txt').read_text(encoding='utf-8')
    installed = set(re.search(r'set\(node_executables ([^)]*)\)', cmake).group(1).split())
    launched = _string_kwargs(BRINGUP, 'executable')
    assert launched == {'marker_node', 'resolver_node', 'speech_node'}
    assert launched <= installed
    for name in installed - {'speech_node'}:  # speech_node.py belongs to the speech module
        assert (ROOT / 'spatial_llava_ros' / 'nodes' / f'{name}.py').is_file()
    assert 'install(DIRECTORY launch config' in cmake


def test_bringup_drives_the_lifecycle_node_to_active():
    """The resolver drives itself to active (autostart, test_nodes_lifecycle.py); the file
    emits no ChangeState, whose service wait in the launch process raises InvalidHandle
    when Ctrl-C comes while the node still starts up."""
    text = BRINGUP.read_text(encoding='utf-8')
    assert 'LifecycleNode(' in text and 'autostart=True' in text
    assert 'ChangeState(' not in text and 'EmitEvent' not in text
    assert 'eval(' not in text


def test_launched_nodes_get_time_to_stop():
    """launch's 5 + 5 s SIGTERM/SIGKILL defaults would kill a node that Ctrl-C stopped while
    it still imports torch on a busy machine; every launched node gets STOP_TIMEOUTS."""
    for path in (BRINGUP, ROOT / 'launch' / 'replay.launch.py'):
        tree = ast.parse(path.read_text(encoding='utf-8'))
        for call in ast.walk(tree):
            if isinstance(call, ast.Call) and getattr(call.func, 'id', '') in (
                    'Node', 'LifecycleNode'):
                names = {k.arg for k in call.keywords}
                spread = [k for k in call.keywords if k.arg is None]
                assert ({'sigterm_timeout', 'sigkill_timeout'} <= names
                        or [ast.unparse(k.value) for k in spread] == ['STOP_TIMEOUTS']), \
                    f'{path.name}:{call.lineno}'


def test_replay_plays_the_synthetic_bag_topics():
    bag = pytest.importorskip('spatial_llava_ros.scene.bag')
    defaults = _replay_defaults()
    assert defaults['color_topic'] == bag.COLOR_TOPIC
    assert defaults['depth_topic'] == bag.DEPTH_TOPIC
    assert defaults['camera_info_topic'] == bag.INFO_TOPIC
    args = _bringup_arguments()
    assert args['color_topic'] == bag.COLOR_TOPIC and args['depth_topic'] == bag.DEPTH_TOPIC
    text = REPLAY.read_text(encoding='utf-8')
    assert "'ros2', 'bag', 'play'" in text and "'--clock'" in text
    assert "{'use_sim_time': 'true'}" in text and defaults['use_sim_time'] == 'true'
    assert defaults['bag'] is None  # required


def test_replay_passes_on_what_docs_ros_md_lists():
    passed = set(_table(REPLAY, 'PASSED'))
    assert passed == {'model_path', 'device', 'navigate', 'namespace', 'params_file',
                      'color_topic', 'depth_topic', 'camera_info_topic'}
    assert passed <= set(_bringup_arguments())


def test_bringup_description_builds_under_ros():
    pytest.importorskip('launch_ros', reason='needs ROS 2 launch_ros')
    import importlib.util

    spec = importlib.util.spec_from_file_location('bringup_launch', BRINGUP)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    names = {a.name for a in description.get_launch_arguments()}
    assert {'model_path', 'navigate', 'params_file'} <= names


def test_replay_description_builds_under_ros():
    pytest.importorskip('launch_ros', reason='needs ROS 2 launch_ros')
    import importlib.util

    spec = importlib.util.spec_from_file_location('replay_launch', REPLAY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    declared = {a.name: a for a in module.generate_launch_description().get_launch_arguments()}
    assert {'bag', 'model_path', 'navigate', 'rate', 'loop'} <= set(declared)
    # what `ros2 launch ... replay.launch.py --show-args` prints: every argument described,
    # bringup's included ones too, and use_sim_time shown as the true that replay forces
    undescribed = [n for n, a in declared.items() if a.description == 'no description given']
    assert undescribed == []
    assert declared['use_sim_time'].default_value[0].text == 'true'
