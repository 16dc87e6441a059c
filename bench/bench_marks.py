"""Time per 640x480 frame of the marks engine on one core, against plain graph segmentation.

For each synthetic frame (seeds no test uses), in the same loop so both see the same
machine load:
- ``graphseg``: ``cv2.ximgproc.segmentation.createGraphSegmentation()`` with its default
  parameters on the full-resolution frame (the reference: a plain, well-known segmenter);
- ``depth``: ``MarkEngine(proposals='depth').process`` end to end (validation, planes,
  components, filtering, centroids, tracking, placement, drawing);
- ``depth_segment``: only the depth proposal step (``segment_depth``);
- ``color``: ``MarkEngine(proposals='color').process`` end to end.
Reports p50 / p90 in ms and each p50 as a ratio to graphseg's p50 from the same run.

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

import cv2
import numpy as np

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
    times: dict[str, list[float]] = {'graphseg': [], 'depth': [], 'depth_segment': [],
                                     'color': []}
    for f in frames[:3]:  # warm-up: caches, lazy imports
        depth_engine.process(f.rgb, f.depth, f.intrinsics)
        color_engine.process(f.rgb)
    for _ in range(args.rounds):
        for f in frames:
            bgr = np.ascontiguousarray(f.rgb[:, :, ::-1])
            t0 = time.perf_counter()
            cv2.ximgproc.segmentation.createGraphSegmentation().processImage(bgr)
            t1 = time.perf_counter()
            depth_engine.reset()
            depth_engine.process(f.rgb, f.depth, f.intrinsics)
            t2 = time.perf_counter()
            segment_depth(f.depth, f.intrinsics, params, f.rgb)
            t3 = time.perf_counter()
            color_engine.reset()
            color_engine.process(f.rgb)
            t4 = time.perf_counter()
            times['graphseg'].append(t1 - t0)
            times['depth'].append(t2 - t1)
            times['depth_segment'].append(t3 - t2)
            times['color'].append(t4 - t3)
    ref = float(np.percentile(times['graphseg'], 50))
    res = {'frames': args.frames, 'rounds': args.rounds, 'size': '640x480',
           'pinned_to_one_core': pinned, 'cv2_threads': cv2.getNumThreads(),
           'machine': {'python': platform.python_version(), 'cpu_count': os.cpu_count(),
                       'processor': platform.processor() or platform.machine(),
                       'load_avg_at_end': os.getloadavg()},
           'results': {}}
    for name, vals in times.items():
        ms = np.array(vals) * 1000
        res['results'][name] = {'p50_ms': round(float(np.percentile(ms, 50)), 2),
                                'p90_ms': round(float(np.percentile(ms, 90)), 2),
                                'ratio_p50_to_graphseg': round(float(np.percentile(vals, 50))
                                                               / ref, 3)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2))
    for name, r in res['results'].items():
        print(f'{name:>14}: p50 {r["p50_ms"]:7.2f} ms  p90 {r["p90_ms"]:7.2f} ms  '
              f'x{r["ratio_p50_to_graphseg"]:.2f} of graphseg')
    print(f'pinned to one core: {pinned}; load average at end: '
          f'{res["machine"]["load_avg_at_end"]}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
