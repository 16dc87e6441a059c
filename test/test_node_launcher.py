"""The node executables' shutdown path without ROS: launcher/node_launcher.c (compiled here
with the system C compiler, as colcon does) and nodes/stop_signals.py, in real processes.

A SIGINT sent once the launcher has blocked it (read from /proc/<pid>/status, so the test
never guesses a delay) reaches the Python script pending, through the whole interpreter
start-up, and becomes a stop request when the script releases it: exit 0, no traceback."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAUNCHER = ROOT / 'launcher' / 'node_launcher.c'

SCRIPT = """
import signal, sys
from spatial_llava_ros.nodes.stop_signals import (
    catch_stop_signals, release_stop_signals, stop_signals_blocked)
print('argv', sys.argv[1:], flush=True)
print('blocked at start', stop_signals_blocked(), flush=True)
stopped = catch_stop_signals()
print('pending', signal.SIGINT in signal.sigpending(), flush=True)
release_stop_signals()
for _ in range(1000):  # the Python-level handler runs between bytecodes
    if stopped.is_set():
        break
print('stopped', stopped.is_set(), flush=True)
sys.exit(3 if '--exit-3' in sys.argv else 0)
"""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env['PATH'] = f'{Path(sys.executable).parent}{os.pathsep}{env.get("PATH", "")}'
    env['PYTHONPATH'] = f'{ROOT}{os.pathsep}{env.get("PYTHONPATH", "")}'
    return env


def _blocked(pid: int, sig: int) -> bool:
    """Whether ``sig`` is in the process's blocked mask (SigBlk in /proc/<pid>/status)."""
    try:
        status = Path(f'/proc/{pid}/status').read_text()
    except OSError:
        return False
    for line in status.splitlines():
        if line.startswith('SigBlk:'):
            return bool(int(line.split()[1], 16) >> (sig - 1) & 1)
    return False


@pytest.fixture(scope='module')
def launcher(tmp_path_factory) -> Path:
    compiler = shutil.which('cc') or shutil.which('gcc')
    if compiler is None or not Path('/proc/self/status').exists():
        pytest.skip('needs a C compiler and /proc (Linux), as a colcon build of the package')
    out = tmp_path_factory.mktemp('launcher') / 'fake_node'
    subprocess.run([compiler, '-O2', '-Wall', '-Werror', '-o', str(out), str(LAUNCHER)],
                   check=True)
    out.with_name('fake_node.py').write_text(SCRIPT)
    return out


def test_the_launcher_runs_its_script_with_the_arguments_and_exit_code(launcher):
    done = subprocess.run([str(launcher), '--ros-args', '-r', '__node:=x', '--exit-3'],
                          env=_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 3, done.stderr
    assert "argv ['--ros-args', '-r', '__node:=x', '--exit-3']" in done.stdout
    assert 'blocked at start True' in done.stdout  # held across execvp into Python
    assert 'pending False' in done.stdout and 'stopped False' in done.stdout


@pytest.mark.parametrize('sig', [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_python_start_up_is_a_clean_stop(launcher, sig):
    proc = subprocess.Popen([str(launcher)], env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    end = time.monotonic() + 30
    while not _blocked(proc.pid, signal.SIGINT) and time.monotonic() < end:
        time.sleep(0.0005)
    assert _blocked(proc.pid, signal.SIGINT), 'the launcher never blocked SIGINT'
    proc.send_signal(sig)
    proc.send_signal(sig)  # a terminal's Ctrl-C, then launch's own: both are one stop
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert 'Traceback' not in err and 'KeyboardInterrupt' not in err, err
    assert 'pending True' in out or sig != signal.SIGINT, out
    assert 'stopped True' in out, out


def test_a_missing_script_is_one_error_line(launcher, tmp_path):
    lonely = tmp_path / 'lonely_node'
    shutil.copy(launcher, lonely)
    done = subprocess.run([str(lonely)], env=_env(), capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2, done.stderr  # python3's own "can't open file" error
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_stop_signals_without_the_launcher():
    """Run as `python -m`: catch_stop_signals blocks them itself from then on."""
    code = ('import os, signal\n'
            'from spatial_llava_ros.nodes.stop_signals import catch_stop_signals, '
            'release_stop_signals\n'
            'stopped = catch_stop_signals()\n'
            'os.kill(os.getpid(), signal.SIGINT)\n'
            'assert not stopped.is_set() and signal.SIGINT in signal.sigpending()\n'
            'release_stop_signals()\n'
            'for _ in range(1000):\n'
            '    pass\n'
            'assert stopped.is_set()\n'
            'os.kill(os.getpid(), signal.SIGINT)  # a second Ctrl-C: no KeyboardInterrupt\n'
            'for _ in range(1000):\n'
            '    pass\n'
            'print("ok")\n')
    done = subprocess.run([sys.executable, '-c', code], env=_env(), capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == 'ok', done.stderr


def test_after_ignore_stop_signals_a_late_ctrl_c_does_not_kill_the_exit():
    """The end of main(): Python's finalization resets its handlers to SIG_DFL, and a
    node that had finished its clean-up died of launch's second SIGINT there (exit -2)."""
    code = ('import os, signal\n'
            'from spatial_llava_ros.nodes.stop_signals import catch_stop_signals, '
            'ignore_stop_signals, release_stop_signals\n'
            'stopped = catch_stop_signals()\n'
            'release_stop_signals()\n'
            'ignore_stop_signals()\n'
            'assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN\n'
            'assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN\n'
            'for _ in range(20):\n'
            '    os.kill(os.getpid(), signal.SIGINT)\n'
            '    os.kill(os.getpid(), signal.SIGTERM)\n'
            'assert not stopped.is_set()\n')
    done = subprocess.run([sys.executable, '-c', code], env=_env(), capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
