"""Ctrl-C a `ros2 launch` of this package N times, as a terminal does, and check each exit.

Run in a sourced workspace (after `colcon build` and `source install/setup.bash`):

    python3 scripts/ros_ctrl_c.py --runs 20 bringup.launch.py
    python3 scripts/ros_ctrl_c.py --runs 20 replay.launch.py bag:=/tmp/traj.mcap
    python3 scripts/ros_ctrl_c.py --expect-error replay.launch.py bag:=/nonexistent.mcap

Each run starts `ros2 launch spatial_llava_ros <file> <args>` in its own process group and,
a random delay (--min-s .. --max-s) after launch started its first node process (so Ctrl-C
lands during the nodes' imports, model loading and steady running alike), sends SIGINT to
the whole group, which is what Ctrl-C in a terminal does. A run passes when the launch exits
within --timeout-s, every node process "has finished cleanly" (exit 0) and nothing died,
the output holds no Python traceback and no other ERROR line (launch's own, e.g. "Caught
exception in launch").
With --expect-error the launch must end by itself, non-zero, with exactly one ERROR line.
Prints one line per run (with where the Ctrl-C landed: `start-up` = no node output yet,
`running`, or `model loaded`) and a summary; exits 1 if any run failed. Logs go to --log-dir.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

CLEAN = re.compile(r'\[INFO\] \[([\w.-]+)\]: process has finished cleanly')
DIED = re.compile(r'\[ERROR\] \[([\w.-]+)\]: process has died \[pid \d+, exit code (-?\d+)')
STARTED = re.compile(r'\[INFO\] \[([\w.-]+)\]: process started with pid')
ERROR = re.compile(r'\[ERROR\]')


def _launch(args, log: Path) -> subprocess.Popen:
    out = log.open('w')
    return subprocess.Popen(['ros2', 'launch', 'spatial_llava_ros', *args], stdout=out,
                            stderr=subprocess.STDOUT, start_new_session=True)


def check_output(text: str) -> list[str]:
    """Why a Ctrl-C'd launch's output is not a clean shutdown ([] when it is)."""
    problems = []
    started = set(STARTED.findall(text))
    clean = set(CLEAN.findall(text))
    for name, code in DIED.findall(text):
        problems.append(f'{name} died with exit code {code}')
    for name in sorted(started - clean - {n for n, _ in DIED.findall(text)}):
        problems.append(f'{name} has no exit line')
    if 'Traceback (most recent call last)' in text:
        problems.append('a Python traceback in the output')
    for line in text.splitlines():  # launch's own errors ("Caught exception in launch")
        if ERROR.search(line) and not DIED.search(line):
            problems.append(f'an error line: {line.strip()[:120]}')
    return problems


INTERRUPTED = '[WARNING] [launch]: user interrupted with ctrl-c'
NODE_LINE = re.compile(r'^\[[\w.-]+-\d+\] ')


def phase_of(text: str) -> str:
    """Where the Ctrl-C landed, from what the nodes had printed before it: 'start-up' (no
    node output yet: Python's start-up, imports, node construction), 'model loaded' (the
    resolver said so: steady running), else 'running' (some node output, model not loaded)."""
    before = text.split(INTERRUPTED, 1)[0]
    if 'model loaded on' in before:
        return 'model loaded'
    if any(NODE_LINE.match(line) for line in before.splitlines()):
        return 'running'
    return 'start-up'


def _wait_started(proc, log: Path, timeout: float) -> bool:
    """Until launch has started its first node process (the `ros2` command's own imports are
    not this package's shutdown path), or the launch ended."""
    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None:
        if STARTED.search(log.read_text(errors='replace')):
            return True
        time.sleep(0.1)
    return False


def run_once(args, log: Path, delay: float, timeout: float) -> list[str]:
    proc = _launch(args, log)
    if not _wait_started(proc, log, timeout):
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return ['no node process started']
    try:
        proc.wait(timeout=delay)
        return [f'the launch ended by itself after {delay:.1f} s (exit {proc.returncode})']
    except subprocess.TimeoutExpired:
        pass
    os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return [f'no exit {timeout:.0f} s after Ctrl-C (killed)']
    return check_output(log.read_text(errors='replace'))


def run_expect_error(args, log: Path, timeout: float) -> list[str]:
    proc = _launch(args, log)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return [f'the launch was still running after {timeout:.0f} s']
    text = log.read_text(errors='replace')
    problems = [] if proc.returncode != 0 else ['the launch exited 0']
    errors = [line for line in text.splitlines() if ERROR.search(line)]
    if len(errors) != 1:
        problems.append(f'{len(errors)} ERROR lines, not 1')
    if 'Traceback (most recent call last)' in text:
        problems.append('a Python traceback in the output')
    return problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('launch_args', nargs='+', help='launch file and its name:=value args')
    parser.add_argument('--runs', type=int, default=20)
    parser.add_argument('--min-s', type=float, default=0.0,
                        help='earliest Ctrl-C, seconds after the first node started')
    parser.add_argument('--max-s', type=float, default=20.0, help='latest Ctrl-C, seconds')
    parser.add_argument('--timeout-s', type=float, default=120.0,
                        help='how long the launch may take to exit after Ctrl-C (the launch '
                        'files give nodes 60 s before SIGTERM, then 30 s before SIGKILL)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--expect-error', action='store_true',
                        help='the launch must fail by itself with one ERROR line')
    parser.add_argument('--log-dir', type=Path, default=Path('ctrl_c_logs'))
    parser.add_argument('--phases', action='store_true',
                        help='only print where Ctrl-C landed in the logs already in --log-dir')
    args = parser.parse_args(argv)
    if args.phases:
        phases = [phase_of(log.read_text(errors='replace'))
                  for log in sorted(args.log_dir.glob('run_*.log'))]
        print(', '.join(f'{phases.count(p)} {p}' for p in ('start-up', 'running',
                                                          'model loaded')))
        return 0
    args.log_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    failed = 0
    runs = 1 if args.expect_error else args.runs
    for i in range(runs):
        log = args.log_dir / f'run_{i:02d}.log'
        started = time.monotonic()
        if args.expect_error:
            problems = run_expect_error(args.launch_args, log, args.timeout_s)
            when = ''
        else:
            delay = rng.uniform(args.min_s, args.max_s)
            problems = run_once(args.launch_args, log, delay, args.timeout_s)
            when = f' Ctrl-C at {delay:4.1f} s ({phase_of(log.read_text(errors="replace"))}),'
        took = time.monotonic() - started
        failed += bool(problems)
        print(f'run {i + 1:2d}/{runs}:{when} {took:5.1f} s: '
              f"{'; '.join(problems) if problems else 'ok'} ({log})", flush=True)
    print(f'{runs - failed}/{runs} ok')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
