"""Time per 640x480 frame of the marks engine on one core, against plain graph segmentation.

For each synthetic frame (seeds no test uses), in the same loop so both see the same
machine load:
- ``graphseg``: ``cv2.ximgproc.segmentation.createGraphSegmentation()`` with its default
  parameters on the full-resolution frame (the reference: a plain, well-known segmenter);
- ``depth``: ``MarkEngine(proposals='depth').process`` end to end (validation, planes,
  components, filtering, centroids, tracking, placement, drawing);
- ``depth_segment``: only the depth proposal step (``segment_depth``);
- ``color``: ``MarkEngine(proposals='color').process`` end to end.
Reports p50 / p90 in ms and each p50 as a ratio to graphseg's p50 from the same run, for
wall-clock time and for the thread's CPU time (``time.thread_time``). On a shared machine
the wall clock includes waiting for a core; CPU time is what one core spends on the frame.

    .venv/bin/python bench/bench_marks.py --frames 40 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault('OPENBLAS_NUM_THREADS', '1')  # before numpy: one core
os.environ.setdefault('OMP_NUM_THREADS', '1')

import cv2  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from spatial_llava_ros.marks import MarkEngine, MarkerConfig  # noqa: E402
from spatial_llava_ros.marks.depth_segment import segment_depth  # noqa: E402
from spatial_llava_ros.scene.generate import generate_scene  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--first-seed', type=int, default=100300)
    ap.add_argument('--frames', type=int, default=40)
    ap.add_argument('--rounds', type=int, default=3)
    ap.add_argument('--out', default='bench/results/marks_bench.json')
    args = ap.parse_args()
    cv2.setNumThreads(1)
    try:
        import torch
        torch.set_num_threads(1)
    except ImportError:
        pass
    try:
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
        pinned = True
    except (AttributeError, OSError):
        pinned = False
    frames = [generate_scene(s).frame for s in range(args.first_seed,
                                                     args.first_seed + args.frames)]
    depth_engine = MarkEngine(MarkerConfig(proposals='depth'))
    color_engine = MarkEngine(MarkerConfig(proposals='color'))
    params = depth_engine.config.depth_params
    names = ('graphseg', 'depth', 'depth_segment', 'color')
    times: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    for f in frames[:3]:  # warm-up: caches, lazy imports
        depth_engine.process(f.rgb, f.depth, f.intrinsics)
        color_engine.process(f.rgb)
    for _ in range(args.rounds):
        for f in frames:
            bgr = np.ascontiguousarray(f.rgb[:, :, ::-1])
            jobs = {
                'graphseg': lambda bgr=bgr: cv2.ximgproc.segmentation
                .createGraphSegmentation().processImage(bgr),
                'depth': lambda f=f: (depth_engine.reset(),
                                      depth_engine.process(f.rgb, f.depth, f.intrinsics)),
                'depth_segment': lambda f=f: segment_depth(f.depth, f.intrinsics, params,
                                                           f.rgb),
                'color': lambda f=f: (color_engine.reset(), color_engine.process(f.rgb)),
            }
            for name, job in jobs.items():
                c0, t0 = time.thread_time(), time.perf_counter()
                job()
                times[name].append(time.perf_counter() - t0)
                cpu[name].append(time.thread_time() - c0)
    res = {'frames': args.frames, 'rounds': args.rounds, 'size': '640x480',
           'pinned_to_one_core': pinned, 'cv2_threads': cv2.getNumThreads(),
           'machine': {'python': platform.python_version(), 'cpu_count': os.cpu_count(),
                       'processor': platform.processor() or platform.machine(),
                       'load_avg_at_end': os.getloadavg()},
           'results': {}}
    for clock, table in (('wall', times), ('cpu', cpu)):
        ref = float(np.percentile(table['graphseg'], 50))
        for name, vals in table.items():
            ms = np.array(vals) * 1000
            res['results'].setdefault(name, {})[clock] = {
                'p50_ms': round(float(np.percentile(ms, 50)), 2),
                'p90_ms': round(float(np.percentile(ms, 90)), 2),
                'ratio_p50_to_graphseg': round(float(np.percentile(vals, 50)) / ref, 3)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2))
    for name, r in res['results'].items():
        for clock in ('cpu', 'wall'):
            c = r[clock]
            print(f'{name:>14} {clock:>4}: p50 {c["p50_ms"]:7.2f} ms  p90 {c["p90_ms"]:7.2f} ms  '
                  f'= {c["ratio_p50_to_graphseg"]:.3f} x graphseg p50')
    print(f'pinned to one core: {pinned}; load average at end: '
          f'{res["machine"]["load_avg_at_end"]}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
