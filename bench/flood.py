"""Flood the running core pipeline: a burst of N queries, then a sustained rate, with figures.

The serving path of the resolver node without ROS: ``QueryService`` (queries.queue
bounded queue, drop-oldest, + worker thread + pipeline.resolve_query) with a tiny random
Spatial-LLaVA loaded through ``load_model``, on frames of the synthetic MCAP bag marked
live by a tracking MarkEngine (published at --fps during the sustained phase). Reports per
phase: submitted / answered / dropped / lost (must be 0) / duplicated (must be 0), outcome
codes, answer latency p50/p99 (submit -> outcome, queue wait included), achieved rates and
RSS before/after (after a warm-up, gc'd).

  nice -n 10 .venv/bin/python bench/flood.py --out bench/results/flood.json
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


class Sink:
    """Outcome sink: one list per ticket, codes and latencies."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_ticket: dict[int, int] = {}
        self.codes: dict[str, int] = {}
        self.latency: list[float] = []

    def __call__(self, ticket, outcome, latency) -> None:
        code = outcome.code or 'success'
        with self.lock:
            self.by_ticket[ticket] = self.by_ticket.get(ticket, 0) + 1
            self.codes[code] = self.codes.get(code, 0) + 1
            if code != 'queue_full':
                self.latency.append(latency)


def phase_report(name, service, sink, tickets, seconds, rss_before, rss_after) -> dict:
    mb = 1 / 2**20
    got = [sink.by_ticket.get(t, 0) for t in tickets]
    lat = np.asarray(sink.latency) * 1e3
    codes = dict(sorted(sink.codes.items()))
    return {
        'phase': name, 'submitted': len(tickets),
        'answered': sum(v for k, v in codes.items() if k not in ('queue_full', 'not_active')),
        'dropped_queue_full': codes.get('queue_full', 0),
        'not_active': codes.get('not_active', 0),
        'lost': sum(1 for n in got if n == 0), 'duplicated': sum(1 for n in got if n > 1),
        'outcome_codes': codes, 'seconds': round(seconds, 2),
        'submit_rate_per_s': round(len(tickets) / seconds, 1) if seconds else None,
        'answer_rate_per_s': round(len(lat) / seconds, 1) if seconds else None,
        'latency_ms': {'p50': round(float(np.percentile(lat, 50)), 2) if lat.size else None,
                       'p99': round(float(np.percentile(lat, 99)), 2) if lat.size else None,
                       'max': round(float(lat.max()), 2) if lat.size else None},
        'rss_mb': {'before': round(rss_before * mb, 1), 'after': round(rss_after * mb, 1),
                   'growth_pct': round(100.0 * (rss_after - rss_before) / rss_before, 2)},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--burst', type=int, default=1000)
    parser.add_argument('--rate', type=float, default=50.0, help='sustained queries per second')
    parser.add_argument('--seconds', type=float, default=60.0, help='sustained phase length')
    parser.add_argument('--overload-rate', type=float, default=400.0,
                        help='a third phase above what the model can answer (0 = skip)')
    parser.add_argument('--overload-seconds', type=float, default=20.0)
    parser.add_argument('--queue', type=int, default=8, help='bounded queue size')
    parser.add_argument('--fps', type=float, default=2.0, help='frames per second, sustained')
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--out', default='bench/results/flood.json')
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from spatial_llava_ros.model.resolver import Resolver
    from spatial_llava_ros.model.tiny import make_tiny_model
    from spatial_llava_ros.pipeline import NAVIGATE, PipelineConfig, QueryRequest
    from spatial_llava_ros.reliability.memory import rss_bytes, rss_source
    from spatial_llava_ros.reliability.replay import LiveReplay, StampedTransforms, synthetic_bag
    from spatial_llava_ros.reliability.service import QueryService

    tmp = Path(tempfile.mkdtemp(prefix='flood-'))
    frames, texts = synthetic_bag(tmp / 'flood.mcap', n_frames=10)
    resolver = Resolver.from_pretrained(make_tiny_model(tmp / 'tiny', seed=0), device='cpu')
    transforms = StampedTransforms()
    phases = []

    def run_phase(name, body):
        sink = Sink()
        service = QueryService(resolver, transforms, PipelineConfig(max_frame_age=2.0),
                               queue_size=args.queue, on_result=sink)
        replay = LiveReplay(frames, service, transforms)
        with service:
            for _ in range(10):  # warm-up, one at a time
                replay.publish_next()
                service.submit(QueryRequest(texts[0], NAVIGATE))
                service.wait_idle(60.0)
            sink.__init__()
            gc.collect()
            before = rss_bytes()
            t0 = time.perf_counter()
            tickets = body(service, replay)
            service.wait_idle(300.0)
            seconds = time.perf_counter() - t0
        gc.collect()
        report = phase_report(name, service, sink, tickets, seconds, before, rss_bytes())
        phases.append(report)
        print(json.dumps(report), flush=True)

    def burst(service, replay):
        return [service.submit(QueryRequest(texts[i % len(texts)], NAVIGATE))
                for i in range(args.burst)]

    def sustained(service, replay, rate=None, seconds=None):
        rate, seconds = rate or args.rate, seconds or args.seconds
        tickets, n = [], int(rate * seconds)
        t0 = time.monotonic()
        next_frame = t0
        for i in range(n):
            now = time.monotonic()
            if now >= next_frame:
                replay.publish_next()
                next_frame += 1.0 / args.fps
            delay = t0 + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            tickets.append(service.submit(QueryRequest(texts[i % len(texts)], NAVIGATE)))
        return tickets

    run_phase(f'burst {args.burst}', burst)
    run_phase(f'sustained {args.rate:g}/s for {args.seconds:g} s', sustained)
    if args.overload_rate > 0:
        run_phase(f'overload {args.overload_rate:g}/s for {args.overload_seconds:g} s',
                  lambda s, r: sustained(s, r, args.overload_rate, args.overload_seconds))
    result = {
        'queue_size': args.queue, 'drop_policy': 'drop the oldest waiting query, answered '
        'queue_full at once', 'phases': phases, 'rss_source': rss_source(),
        'model': 'tiny random LLaVA (make_tiny_model seed 0), CPU float32',
        'frames': '320x240 synthetic bag, marked live', 'torch_threads': args.threads,
        'python': platform.python_version(), 'torch': torch.__version__,
        'cpu_count': os.cpu_count(), 'load_average_end': [round(v, 2) for v in os.getloadavg()],
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + '\n', encoding='utf-8')
    out.with_suffix('.md').write_text(markdown(result), encoding='utf-8')
    bad = sum(p['lost'] + p['duplicated'] for p in phases)
    return 1 if bad else 0


def markdown(r: dict) -> str:
    rows = ['| phase | submitted | answered | dropped (queue_full) | lost | duplicated | '
            'answers/s | p50 ms | p99 ms | RSS before MB | RSS after MB | growth |',
            '|---|---|---|---|---|---|---|---|---|---|---|---|']
    for p in r['phases']:
        lat, rss = p['latency_ms'], p['rss_mb']
        rows.append(f'| {p["phase"]} | {p["submitted"]} | {p["answered"]} | '
                    f'{p["dropped_queue_full"]} | {p["lost"]} | {p["duplicated"]} | '
                    f'{p["answer_rate_per_s"]} | {lat["p50"]} | {lat["p99"]} | '
                    f'{rss["before"]} | {rss["after"]} | {rss["growth_pct"]}% |')
    return '\n'.join([
        f'# Flood: bounded queue of {r["queue_size"]} ({r["drop_policy"]})', '',
        f'{r["model"]}; {r["frames"]}; {r["torch_threads"]} torch thread(s) on a '
        f'{r["cpu_count"]}-core box shared with other jobs (load average at the end '
        f'{r["load_average_end"]}). RSS via {r["rss_source"]}.', '', *rows, '',
        'Outcome codes per phase: ' + '; '.join(
            f'{p["phase"]}: {p["outcome_codes"]}' for p in r['phases']), ''])


if __name__ == '__main__':
    raise SystemExit(main())
