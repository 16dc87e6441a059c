"""How often ``spatial-llava demo --seed N`` answers the expected mark, as a new user runs it.

Runs the real command once per seed (a new process each time, the shipped model unless
``--model``), reads the ``result.json`` it writes and counts the runs whose chosen mark is
the expected one. Example:

  .venv/bin/python bench/demo_seeds.py --seeds 0:20 --out bench/results/demo_default.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path


def run_demo(seed: int, out: Path, model: str | None) -> dict:
    cmd = [sys.executable, '-m', 'spatial_llava_ros.cli', 'demo', '--seed', str(seed),
           '--out', str(out)]
    if model:
        cmd += ['--model', model]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    result = json.loads((out / 'result.json').read_text()) if (out / 'result.json').is_file() \
        else {}
    return {'seed': seed, 'exit_code': proc.returncode, 'query': result.get('query'),
            'mark_id': result.get('mark_id'), 'expected_mark_id': result.get('expected_mark_id'),
            'correct': result.get('mark_id') is not None
            and result.get('mark_id') == result.get('expected_mark_id')}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument('--seeds', default='0:20', help='START:END (end exclusive)')
    p.add_argument('--model', default=None, help='model directory (default: the shipped model)')
    p.add_argument('--out', default=None, help='JSON report path')
    args = p.parse_args()
    start, end = (int(v) for v in args.seeds.split(':'))
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(start, end):
            runs.append(run_demo(seed, Path(tmp) / str(seed), args.model))
            r = runs[-1]
            print(f"seed {seed}: mark {r['mark_id']} expected {r['expected_mark_id']} "
                  f"{'ok' if r['correct'] else 'WRONG'}  ({r['query']})", flush=True)
    report = {'seeds': args.seeds, 'model': args.model or 'shipped',
              'correct': sum(r['correct'] for r in runs), 'runs': len(runs), 'per_seed': runs}
    print(f"{report['correct']} of {report['runs']} demo runs answered the expected mark")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2) + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
