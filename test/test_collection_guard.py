"""A module-level skip skips that module only, also with launch_testing's pytest plugin.

launch_testing (on every ROS 2 install, auto-loaded through its pytest11 entry point, so
under ``colcon test`` too) imports each test module inside ``pytest_pycollect_makemodule``;
a skip raised there used to end the whole session at "0 items" (issue 18). Each case runs
pytest in a subprocess on a two-module suite with this directory's conftest.py.

Where launch_testing is installed the subprocess loads the real plugin. Elsewhere (it is not
on PyPI) a stand-in plugin does what its hook does, importing the module in the hook and
letting the skip escape: a test double, because the real one cannot exist there.
"""

import importlib.util
import shutil
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
HAVE_LAUNCH_TESTING = importlib.util.find_spec('launch_testing') is not None

STAND_IN = """
import importlib.util


def pytest_pycollect_makemodule(module_path, parent):
    # as launch_testing.pytest.hooks.find_launch_test_entrypoint: import, catch SyntaxError only
    spec = importlib.util.spec_from_file_location('_probe_' + module_path.stem, module_path)
    try:
        spec.loader.exec_module(importlib.util.module_from_spec(spec))
    except SyntaxError:
        pass
    return None
"""

SUITE = {
    'test_needs_missing_extra.py': (
        'import pytest\n'
        "pytest.importorskip('no_such_module_spatial_llava', reason='needs the extra')\n\n"
        'def test_never_runs():\n    raise AssertionError\n'),
    'test_plain.py': 'def test_one():\n    assert 1 + 1 == 2\n\n'
                     'def test_two():\n    assert True\n',
}


def _run(pytester, with_guard: bool):
    pytester.makepyfile(**{name[:-3]: text for name, text in SUITE.items()})
    if with_guard:
        shutil.copy(HERE / 'conftest.py', pytester.path / 'conftest.py')
    args = ['-p', 'no:cacheprovider', '-p', 'no:randomly', '-rs']
    if not HAVE_LAUNCH_TESTING:
        pytester.makepyfile(stand_in_plugin=STAND_IN)
        args += ['-p', 'stand_in_plugin']
    return pytester.runpytest_subprocess(*args)


def test_a_module_level_skip_skips_only_its_module(pytester):
    result = _run(pytester, with_guard=True)
    result.assert_outcomes(passed=2, skipped=1)
    result.stdout.fnmatch_lines(['*needs the extra*'])


def test_without_the_guard_the_session_is_lost(pytester):
    """The failure the guard exists for: nothing runs (pytest exits 5 or with an error)."""
    result = _run(pytester, with_guard=False)
    assert result.parseoutcomes().get('passed', 0) == 0
    assert result.ret != 0


@pytest.mark.skipif(not HAVE_LAUNCH_TESTING, reason='needs launch_testing (ROS 2)')
def test_launch_testing_is_the_plugin_in_use(pytester):
    pytester.makepyfile(test_x='def test_x():\n    pass\n')
    result = pytester.runpytest_subprocess('--trace-config', '-p', 'no:cacheprovider')
    result.stdout.fnmatch_lines(['*launch_testing*'])
