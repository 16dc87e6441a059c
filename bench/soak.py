"""Soak: replay the synthetic bag in a loop with a query every second, for N minutes.

The core serving path end to end, with no ROS: frames of a synthetic MCAP bag (written and
read back through rosbags) are marked live by one tracking MarkEngine and re-stamped to
the wall clock; a ``QueryService`` (bounded QueryQueue + worker thread +
``pipeline.resolve_query``) answers one query per second with a tiny random Spatial-LLaVA
checkpoint loaded through ``load_model``. Reports RSS after warm-up and at the end (growth
should stay under 5%), RSS every 30 s, p50/p99/max query latency (submit -> outcome) and
the outcome codes. Every query must get exactly one outcome.

  nice -n 10 .venv/bin/python bench/soak.py --minutes 10 --out bench/results/soak.json
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float('nan')


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--minutes', type=float, default=10.0)
    parser.add_argument('--query-period', type=float, default=1.0, help='seconds between queries')
    parser.add_argument('--fps', type=float, default=2.0, help='frames published per second')
    parser.add_argument('--frames', type=int, default=10, help='frames in the synthetic bag')
    parser.add_argument('--size', default='320x240', help='frame size WxH')
    parser.add_argument('--warmup', type=float, default=20.0, help='seconds before RSS start')
    parser.add_argument('--threads', type=int, default=1, help='torch threads (be polite)')
    parser.add_argument('--out', default='bench/results/soak.json')
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from spatial_llava_ros.model.resolver import Resolver
    from spatial_llava_ros.model.tiny import make_tiny_model
    from spatial_llava_ros.pipeline import NAVIGATE, PipelineConfig, QueryRequest
    from spatial_llava_ros.reliability.memory import rss_bytes, rss_source
    from spatial_llava_ros.reliability.replay import LiveReplay, StampedTransforms, synthetic_bag
    from spatial_llava_ros.reliability.service import QueryService

    width, height = (int(v) for v in args.size.lower().split('x'))
    tmp = Path(tempfile.mkdtemp(prefix='soak-'))
    frames, texts = synthetic_bag(tmp / 'soak.mcap', n_frames=args.frames, width=width,
                                  height=height)
    resolver = Resolver.from_pretrained(make_tiny_model(tmp / 'tiny', seed=0), device='cpu')
    rss_loaded = rss_bytes()

    latencies: list[float] = []
    codes: dict[str, int] = {}
    outcomes_seen: dict[int, int] = {}
    lock = threading.Lock()

    def on_result(ticket: int, outcome, latency: float) -> None:
        with lock:
            outcomes_seen[ticket] = outcomes_seen.get(ticket, 0) + 1
            codes[outcome.code or 'success'] = codes.get(outcome.code or 'success', 0) + 1
            if measuring:
                latencies.append(latency)

    transforms = StampedTransforms()
    service = QueryService(resolver, transforms, PipelineConfig(max_frame_age=2.0),
                           queue_size=8, on_result=on_result)
    replay = LiveReplay(frames, service, transforms)
    measuring = False
    samples: list[tuple[float, int]] = []
    start = time.monotonic()
    duration = args.warmup + args.minutes * 60.0
    next_frame = next_query = next_sample = start
    queries = 0
    rss_start = None
    with service:
        while True:
            now = time.monotonic()
            t = now - start
            if t >= duration:
                break
            if not measuring and t >= args.warmup:
                service.wait_idle(30.0)
                gc.collect()
                rss_start = rss_bytes()
                measuring = True
                next_sample = now
            if now >= next_frame:
                replay.publish_next()
                next_frame += 1.0 / args.fps
            if now >= next_query:
                service.submit(QueryRequest(texts[queries % len(texts)], NAVIGATE))
                queries += 1
                next_query += args.query_period
            if measuring and now >= next_sample:
                samples.append((round(t - args.warmup, 1), rss_bytes()))
                next_sample += 30.0
            wake = min(next_frame, next_query, next_sample if measuring else next_query)
            time.sleep(max(0.0, min(0.05, wake - time.monotonic())))
        service.wait_idle(60.0)
    gc.collect()
    rss_end = rss_bytes()
    stats = service.stats
    lost = stats.submitted - (stats.answered + stats.dropped + stats.not_active
                              + stats.internal_errors)
    duplicated = sum(1 for n in outcomes_seen.values() if n > 1)
    mb = 1 / 2**20
    result = {
        'minutes': args.minutes, 'warmup_s': args.warmup, 'query_period_s': args.query_period,
        'fps': args.fps, 'frame_size': [width, height], 'bag_frames': len(frames),
        'frames_published': replay.published, 'queries': stats.submitted,
        'answered': stats.answered, 'dropped': stats.dropped, 'not_active': stats.not_active,
        'internal_errors': stats.internal_errors, 'lost': lost,
        'queries_with_two_outcomes': duplicated,
        'outcome_codes': dict(sorted(codes.items())),
        'latency_ms': {'n': len(latencies), 'p50': round(percentile(latencies, 50) * 1e3, 2),
                       'p99': round(percentile(latencies, 99) * 1e3, 2),
                       'max': round(max(latencies) * 1e3, 2) if latencies else None},
        'rss_source': rss_source(),
        'rss_mb': {'after_model_load': round(rss_loaded * mb, 1),
                   'start': round(rss_start * mb, 1), 'end': round(rss_end * mb, 1),
                   'growth_pct': round(100.0 * (rss_end - rss_start) / rss_start, 2)},
        'rss_series_mb': [[t, round(b * mb, 1)] for t, b in samples],
        'model': 'tiny random LLaVA (make_tiny_model seed 0), CPU float32',
        'torch_threads': args.threads, 'python': platform.python_version(),
        'torch': torch.__version__, 'cpu_count': os.cpu_count(),
        'load_average_end': [round(v, 2) for v in os.getloadavg()],
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + '\n', encoding='utf-8')
    out.with_suffix('.md').write_text(markdown(result), encoding='utf-8')
    print(json.dumps(result, indent=2))
    return 0 if lost == 0 and duplicated == 0 else 1


def markdown(r: dict) -> str:
    lat, rss = r['latency_ms'], r['rss_mb']
    return '\n'.join([
        f'# Soak: {r["minutes"]:g} min replay loop, one query every {r["query_period_s"]:g} s',
        '',
        f'Synthetic bag of {r["bag_frames"]} frames ({r["frame_size"][0]}x'
        f'{r["frame_size"][1]}) replayed at {r["fps"]:g} fps, marked live; {r["model"]}; '
        f'{r["torch_threads"]} torch thread(s) on a {r["cpu_count"]}-core box shared with '
        f'other jobs (load average at the end {r["load_average_end"]}).',
        '',
        '| queries | answered | dropped | lost | p50 ms | p99 ms | max ms | RSS start MB '
        '| RSS end MB | growth |',
        '|---|---|---|---|---|---|---|---|---|---|',
        f'| {r["queries"]} | {r["answered"]} | {r["dropped"]} | {r["lost"]} | {lat["p50"]} | '
        f'{lat["p99"]} | {lat["max"]} | {rss["start"]} | {rss["end"]} | '
        f'{rss["growth_pct"]}% |',
        '',
        f'Outcome codes: {r["outcome_codes"]}. RSS via {r["rss_source"]} after '
        f'{r["warmup_s"]:g} s warm-up; series (s, MB): {r["rss_series_mb"]}.',
        '',
    ])


if __name__ == '__main__':
    raise SystemExit(main())
