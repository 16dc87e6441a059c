"""Run pytest on some test files N times, each time in a new random order; stop at a failure.

    python3 scripts/pytest_shuffled.py --runs 10 --seed 0 test/test_faults_ros.py \\
        test/test_flood_ros.py test/test_launch_bringup.py ...

Why a script and not pytest-randomly: under a ROS 2 install the suite runs with the pytest
that launch_testing accepts (7.4 on Jazzy), in an environment the package does not own;
this needs nothing but that pytest. Order as pytest-randomly's: the files shuffled, and the
tests inside each file shuffled (node ids, as ``--collect-only -q`` lists them; a
launch_testing file is one test). Every run is a fresh pytest process given the node ids in
that order, so fixtures and rclpy contexts are set up as in a normal run. The order of each
run goes to ``--log-dir``/run_NN.order; pytest's output to run_NN.log. Extra pytest options
after ``--``.
"""

from __future__ import annotations

import argparse
import random
import re
import subprocess
import sys
import time
from pathlib import Path

SUMMARY = re.compile(r'^=+ (.*(passed|failed|error|skipped).*) in [\d.]+s', re.MULTILINE)


def collect(files: list[str], extra: list[str]) -> list[str]:
    """The node ids pytest collects from ``files``, in pytest's order."""
    out = subprocess.run([sys.executable, '-m', 'pytest', '--collect-only', '-q', *extra,
                          *files], capture_output=True, text=True)
    ids = [line.strip() for line in out.stdout.splitlines()
           if '::' in line and not line.startswith(('=', ' '))]
    if not ids:
        raise SystemExit(f'collected nothing from {files}:\n{out.stdout[-2000:]}{out.stderr}')
    # pytest names them relative to its rootdir; give them back as the files were given
    # (e.g. absolute paths from a colcon build directory)
    given = {Path(f).name: f for f in files}
    return [given.get(Path(i.split('::', 1)[0]).name, i.split('::', 1)[0]) + '::'
            + i.split('::', 1)[1] for i in ids]


def shuffled(ids: list[str], rng: random.Random) -> list[str]:
    """Files in a random order, and the tests of each file in a random order."""
    by_file: dict[str, list[str]] = {}
    for node_id in ids:
        by_file.setdefault(node_id.split('::', 1)[0], []).append(node_id)
    files = list(by_file)
    rng.shuffle(files)
    order = []
    for name in files:
        tests = list(by_file[name])
        rng.shuffle(tests)
        order += tests
    return order


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('files', nargs='+')
    parser.add_argument('--runs', type=int, default=10)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--log-dir', type=Path, default=Path('shuffled_logs'))
    parser.add_argument('--timeout-s', type=float, default=3600.0, help='per run')
    args, extra = parser.parse_known_args(argv)
    extra = [a for a in extra if a != '--']
    args.log_dir.mkdir(parents=True, exist_ok=True)
    ids = collect(args.files, extra)
    print(f'{len(ids)} tests in {len(args.files)} files', flush=True)
    rng = random.Random(args.seed)
    for i in range(args.runs):
        order = shuffled(ids, rng)
        (args.log_dir / f'run_{i:02d}.order').write_text('\n'.join(order) + '\n')
        log = args.log_dir / f'run_{i:02d}.log'
        started = time.monotonic()
        with log.open('w') as out:
            try:
                code = subprocess.run([sys.executable, '-m', 'pytest', '-p', 'no:cacheprovider',
                                       *extra, *order], stdout=out, stderr=subprocess.STDOUT,
                                      timeout=args.timeout_s).returncode
            except subprocess.TimeoutExpired:
                code = 'timeout'
        found = SUMMARY.findall(log.read_text(errors='replace'))
        summary = found[-1][0] if found else 'no summary'
        print(f'run {i + 1:2d}/{args.runs}: {time.monotonic() - started:6.1f} s, exit {code}: '
              f'{summary} (first: {order[0]})', flush=True)
        if code != 0:
            print(f'stopped: run {i + 1} failed ({log})')
            return 1
    print(f'{args.runs}/{args.runs} runs passed')
    return 0


if __name__ == '__main__':
    sys.exit(main())
