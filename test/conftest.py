"""Shared pytest setup: the ``slow`` marker is opt-in with ``--runslow``; module-level skips
stay per module when launch_testing's plugin is loaded."""

import pytest

pytest_plugins = ('pytester',)  # test_collection_guard runs pytest on small suites


def pytest_addoption(parser):
    parser.addoption('--runslow', action='store_true', help='run tests marked slow')


def pytest_collection_modifyitems(config, items):
    if config.getoption('--runslow'):
        return
    skip = pytest.mark.skip(reason='slow: pass --runslow to run')
    for item in items:
        if 'slow' in item.keywords:
            item.add_marker(skip)


@pytest.hookimpl(hookwrapper=True)
def pytest_pycollect_makemodule(module_path, parent):
    """Give a module whose import skips (or fails) back to pytest's own collector.

    launch_testing's plugin (auto-loaded through its pytest11 entry point wherever ROS 2 is
    installed, so also under ``colcon test``) imports every test module in this hook to look
    for ``generate_test_description`` and catches only SyntaxError. A module-level
    ``pytest.importorskip`` that skips there (rclpy, nav2_msgs or the built interfaces
    missing) escapes the hook and skips the whole session: "collected 0 items", exit 5.
    Here such a module becomes a plain ``pytest.Module``, which imports it again and reports
    the skip (with its reason) or the import error for that module only.
    """
    outcome = yield
    if module_path.name != '__init__.py' and outcome.excinfo is not None and isinstance(
            outcome.excinfo[1], (pytest.skip.Exception, Exception)):
        outcome.force_result(pytest.Module.from_parent(parent, path=module_path))
