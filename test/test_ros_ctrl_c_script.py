"""scripts/ros_ctrl_c.py's verdict on launch output (plain text, no ROS needed): clean exits
pass; a node that died, a node with no exit line, or a traceback fail.

The sample lines are in the form launch 3.4 (Jazzy) prints them."""

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / 'scripts' / 'ros_ctrl_c.py'
spec = importlib.util.spec_from_file_location('ros_ctrl_c', SCRIPT)
ros_ctrl_c = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ros_ctrl_c)

STARTED = ('[INFO] [marker_node-1]: process started with pid [101]\n'
           '[INFO] [resolver_node-2]: process started with pid [102]\n')
INTERRUPTED = '[WARNING] [launch]: user interrupted with ctrl-c (SIGINT)\n'


def test_clean_shutdown_passes():
    text = STARTED + INTERRUPTED + (
        '[INFO] [marker_node-1]: process has finished cleanly [pid 101]\n'
        '[INFO] [resolver_node-2]: process has finished cleanly [pid 102]\n')
    assert ros_ctrl_c.check_output(text) == []


def test_a_died_node_and_a_traceback_fail():
    text = STARTED + INTERRUPTED + (
        '[marker_node-1] Traceback (most recent call last):\n'
        "[marker_node-1] rclpy._rclpy_pybind11.RCLError: failed to initialize wait set\n"
        "[ERROR] [marker_node-1]: process has died [pid 101, exit code 1, cmd 'x'].\n"
        '[INFO] [resolver_node-2]: process has finished cleanly [pid 102]\n')
    assert ros_ctrl_c.check_output(text) == ['marker_node-1 died with exit code 1',
                                             'a Python traceback in the output']


def test_a_node_without_an_exit_line_fails():
    text = STARTED + '[INFO] [marker_node-1]: process has finished cleanly [pid 101]\n'
    assert ros_ctrl_c.check_output(text) == ['resolver_node-2 has no exit line']


def test_an_error_line_from_launch_itself_fails():
    """launch_ros' lifecycle service wait, destroyed under it by Ctrl-C (issue 18)."""
    text = STARTED + INTERRUPTED + (
        '[ERROR] [launch]: Caught exception in launch (see debug for traceback): cannot use '
        'Destroyable because destruction was requested\n'
        '[INFO] [marker_node-1]: process has finished cleanly [pid 101]\n'
        '[INFO] [resolver_node-2]: process has finished cleanly [pid 102]\n')
    assert ros_ctrl_c.check_output(text) == [
        'an error line: [ERROR] [launch]: Caught exception in launch (see debug for traceback):'
        ' cannot use Destroyable because destruction was r']


def test_where_the_ctrl_c_landed():
    assert ros_ctrl_c.phase_of(STARTED + INTERRUPTED) == 'start-up'
    early = STARTED + '[marker_node-1] [INFO] [1.0] [marker_node]: marking\n' + INTERRUPTED
    assert ros_ctrl_c.phase_of(early) == 'running'
    loaded = (STARTED + '[resolver_node-2] [INFO] [1.0] [resolver_node]: model loaded on cpu '
              'in 2.0 s\n' + INTERRUPTED + '[resolver_node-2] [INFO] later\n')
    assert ros_ctrl_c.phase_of(loaded) == 'model loaded'
    assert ros_ctrl_c.phase_of(STARTED + INTERRUPTED + 'model loaded on cpu') == 'start-up'
