"""Remote resolver benchmark: per-query latency against the local resolver, and fleet throughput.

In one run, on the same model and the same marked frames:
- per-query latency, one client: local ``Resolver.score`` (new frame each query: no KV
  reuse) and ``RemoteResolver.score`` over HTTP, and their ratio (remote / local, p50);
- throughput with 1, 4 and 16 concurrent clients (one RemoteResolver each, as robots of a
  fleet), for each scoring path, against a server without and with continuous batching.

With no ``--server`` the script starts ``transformers serve`` on 127.0.0.1 itself (twice:
without and with ``--continuous-batching``). With ``--server URL`` it measures that server
(e.g. vLLM on a GPU machine, which always batches continuously):

    vllm serve DIR --enable-prefix-caching --max-model-len 4096 --gpu-memory-utilization 0.9
    python bench/bench_remote.py --server http://127.0.0.1:8000/v1 --server-model DIR \\
        --model DIR --device cuda --out bench/results/remote_vllm_gpu.json

Writes OUT (JSON) and OUT with .md (the table). No figure here is asserted anywhere.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / 'test'))


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def frames_for(model_dir, n: int, max_mark: int | None):
    from spatial_llava_ros.training.synthetic import SomSettings, marked_scene

    settings = SomSettings.for_model(model_dir)
    out = []
    for seed in range(100000, 100000 + 50 * n):
        ms = marked_scene(seed, settings, max_expressions=4)
        if ms.queries and (max_mark is None or max(ms.mark_ids) <= max_mark):
            out.append((ms.image, ms.mark_ids, ms.queries[0][0]))
        if len(out) == n:
            return out
    raise SystemExit(f'only {len(out)} usable scenes found')


def latencies(score, frames, warmup: int) -> list[float]:
    for image, marks, q in frames[:warmup]:
        score(image, marks, q)
    out = []
    for image, marks, q in frames[warmup:]:
        t = time.perf_counter()
        score(image, marks, q)
        out.append((time.perf_counter() - t) * 1000)
    return out


def throughput(url, model, scoring, frames, clients: int, per_client: int) -> dict:
    from spatial_llava_ros.model.remote import RemoteConfig, RemoteError, RemoteResolver

    resolvers = [RemoteResolver(RemoteConfig(url, server_model=model, scoring=scoring,
                                             timeout=600.0, max_in_flight=1),
                                on_log=lambda _: None) for _ in range(clients)]
    for r in resolvers:  # probe once per client, outside the timing
        image, marks, q = frames[0]
        try:
            r.score(image, marks, q)
        except RemoteError:
            pass
    errors, lat = [], []
    lock = threading.Lock()

    def run(i):
        r = resolvers[i]
        for k in range(per_client):
            image, marks, q = frames[(i * per_client + k) % len(frames)]
            t = time.perf_counter()
            try:
                r.score(image, marks, q)
            except RemoteError as exc:
                with lock:
                    errors.append(exc.code)
            with lock:
                lat.append((time.perf_counter() - t) * 1000)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    for r in resolvers:
        r.close()
    n = clients * per_client
    return {'clients': clients, 'queries': n, 'wall_s': round(wall, 3),
            'queries_per_s': round(n / wall, 3), 'p50_ms': round(pct(lat, 0.5), 2),
            'p95_ms': round(pct(lat, 0.95), 2), 'errors': len(errors),
            'error_codes': sorted(set(errors))}


def cb_used(log_path: Path) -> bool | None:
    """Whether transformers serve says it used continuous batching ('CB: True')."""
    try:
        text = log_path.read_text(errors='replace')
    except OSError:
        return None
    if 'CB: True' in text:
        return True
    return False if 'CB: False' in text else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--model', default=None, help='model dir (default: the shipped model)')
    ap.add_argument('--server', default=None, help='measure this server instead of starting '
                    'transformers serve')
    ap.add_argument('--server-model', default=None)
    ap.add_argument('--device', default='cpu', help='device of the local resolver')
    ap.add_argument('--queries', type=int, default=20, help='timed latency queries')
    ap.add_argument('--warmup', type=int, default=3)
    ap.add_argument('--clients', default='1,4,16')
    ap.add_argument('--per-client', type=int, default=4, help='queries per client')
    ap.add_argument('--scorings', default='systemone,generate')
    ap.add_argument('--out', default='bench/results/remote_cpu.json')
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from serve_helpers import ServeProcess

    from spatial_llava_ros.model.remote import RemoteConfig, RemoteResolver
    from spatial_llava_ros.model.resolver import Resolver
    from spatial_llava_ros.paths import model_dir

    model = model_dir(args.model)
    frames = frames_for(model, args.queries + args.warmup, max_mark=9)
    local = Resolver.from_pretrained(model, device=args.device,
                                     dtype='float32' if args.device == 'cpu' else None)

    def local_score(image, marks, q):
        local.forget_frames()  # a new frame each query, as the remote path sees it
        return local.score(image, marks, q)

    clients = [int(c) for c in args.clients.split(',')]
    scorings = args.scorings.split(',')
    report = {'model': str(model), 'device': args.device, 'python': platform.python_version(),
              'torch_threads': torch.get_num_threads(), 'cpus': os.cpu_count(),
              'queries': args.queries, 'warmup': args.warmup, 'servers': []}
    configs = [('external', [])] if args.server else [
        ('transformers serve', []), ('transformers serve --continuous-batching',
                                     ['--continuous-batching'])]
    lat_local = latencies(local_score, frames, args.warmup)
    report['local'] = {'p50_ms': round(pct(lat_local, 0.5), 2),
                       'p95_ms': round(pct(lat_local, 0.95), 2)}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for name, extra in configs:
        proc = None
        log = out.with_name(out.stem + f'_server{len(report["servers"])}.log')
        if args.server:
            url, served = args.server, args.server_model or ''
        else:
            proc = ServeProcess(model, extra=extra, log_path=log, niceness=0).start()
            url, served = proc.url, str(model)
        try:
            entry = {'server': name, 'latency': {}, 'throughput': {}}
            for scoring in scorings:
                r = RemoteResolver(RemoteConfig(url, server_model=served, scoring=scoring,
                                                timeout=600.0), on_log=lambda _: None)
                lat = latencies(r.score, frames, args.warmup)
                r.close()
                entry['latency'][scoring] = {
                    'p50_ms': round(pct(lat, 0.5), 2), 'p95_ms': round(pct(lat, 0.95), 2),
                    'ratio_to_local_p50': round(pct(lat, 0.5) / pct(lat_local, 0.5), 3)}
                entry['throughput'][scoring] = [
                    throughput(url, served, scoring, frames, c, args.per_client)
                    for c in clients]
                print(json.dumps({name: {scoring: entry['latency'][scoring]}}), flush=True)
        finally:
            if proc is not None:
                proc.stop()
        entry['continuous_batching_used'] = cb_used(log) if proc is not None else None
        report['servers'].append(entry)
    out.write_text(json.dumps(report, indent=2) + '\n')
    out.with_suffix('.md').write_text(markdown(report))
    print(markdown(report))
    return 0


def markdown(rep: dict) -> str:
    lines = [f"Remote resolver, model `{rep['model']}`, local device {rep['device']}, "
             f"{rep['cpus']} CPUs, torch threads {rep['torch_threads']}, "
             f"{rep['queries']} timed queries after {rep['warmup']} warm-up.", '',
             '| path | p50 ms | p95 ms | ratio to local, p50 |', '|---|---:|---:|---:|',
             f"| local `Resolver.score` (new frame each query) | {rep['local']['p50_ms']} | "
             f"{rep['local']['p95_ms']} | 1.000 |"]
    for s in rep['servers']:
        for scoring, v in s['latency'].items():
            lines.append(f"| {s['server']}, {scoring} | {v['p50_ms']} | {v['p95_ms']} | "
                         f"{v['ratio_to_local_p50']} |")
    lines += ['', '| server | scoring | clients | queries/s | p50 ms | p95 ms | errors |',
              '|---|---|---:|---:|---:|---:|---:|']
    for s in rep['servers']:
        cb = s.get('continuous_batching_used')
        tag = '' if cb is None else f" (CB used: {'yes' if cb else 'no'})"
        for scoring, rows in s['throughput'].items():
            for row in rows:
                lines.append(f"| {s['server']}{tag} | {scoring} | {row['clients']} | "
                             f"{row['queries_per_s']} | {row['p50_ms']} | {row['p95_ms']} | "
                             f"{row['errors']} |")
    return '\n'.join(lines) + '\n'


if __name__ == '__main__':
    raise SystemExit(main())
