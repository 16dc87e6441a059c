"""Memory of the trainer's data path: converted frames read lazily from disk vs in memory.

Builds a SUN-Spot-style set of ``--frames`` synthetic scenes (``scene.io.write_scene``), runs
the real converter on it (``spatial-llava convert``: SoM images + LLaVA conversations JSON),
then measures, in one run:

- lazy: ``spatial-llava train`` on that JSON (``data.source: json``, ``data.workers`` loader
  processes, tiny model) for ``--steps`` steps; the proportional set size (PSS, so pages
  shared by the forked workers count once) of the trainer and its workers is sampled every
  0.2 s and reported per tenth of the run;
- in memory: the path the trainer had before (``trainer.load_json_examples``: every record
  and its decoded image in one list), PSS before and after loading the same records.

Usage (once, on the shared 2-core machine, niced):
    OMP_NUM_THREADS=1 nice -n 19 python bench/bench_train_data.py --frames 5000 \
        --work /tmp/bench_data --out bench/results/train_data_memory.json
Writes the JSON and a .md table beside it. Never a timed assert: these are measurements.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def pss_mb(pid: int) -> float:
    """PSS of one process in MB (0 when it is gone)."""
    try:
        for line in Path(f'/proc/{pid}/smaps_rollup').read_text().splitlines():
            if line.startswith('Pss:'):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def tree(pid: int) -> list[int]:
    out = [pid]
    try:
        kids = Path(f'/proc/{pid}/task/{pid}/children').read_text().split()
    except OSError:
        return out
    for k in kids:
        out += tree(int(k))
    return out


class Sampler(threading.Thread):
    """PSS of a process tree every ``period`` s: (t, total MB, worker MB, processes)."""

    def __init__(self, pid: int, period: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.pid, self.period, self.samples, self.stop = pid, period, [], threading.Event()

    def run(self) -> None:
        t0 = time.time()
        while not self.stop.is_set():
            pids = tree(self.pid)
            per = [pss_mb(p) for p in pids]
            self.samples.append((round(time.time() - t0, 2), sum(per), sum(per[1:]), len(pids)))
            time.sleep(self.period)


def build(work: Path, frames: int, width: int, height: int) -> tuple[Path, float]:
    from spatial_llava_ros.scene.generate import generate_scene
    from spatial_llava_ros.scene.io import write_scene
    from spatial_llava_ros.training.convert import convert

    conv = work / 'converted'
    if (conv / 'train.json').is_file():
        return conv, 0.0
    t0 = time.time()
    ann = work / 'annotations'
    for seed in range(frames):
        d = ann / f'scene_{seed:05d}'
        if not (d / 'annotation.json').is_file():
            write_scene(generate_scene(200000 + seed, width, height), d)
    summary = convert(ann, conv, val_fraction=0.0, seed=0, progress=True)
    print(json.dumps({k: v for k, v in summary.to_dict().items() if k != 'skipped'}))
    return conv, time.time() - t0


def run_lazy(conv: Path, work: Path, steps: int, workers: int, batch: int) -> dict:
    import yaml

    out = work / 'train_lazy'
    cfg = {'output_dir': str(out), 'resume': False,
           'model': {'image_size': 64, 'patch_size': 16, 'vision_hidden': 32,
                     'vision_layers': 2, 'text_hidden': 64, 'text_layers': 2, 'heads': 2},
           'data': {'source': 'json', 'json_path': str(conv / 'train.json'),
                    'workers': workers, 'val_seeds': ''},
           'lm': 'full', 'vision': 'train', 'steps': steps, 'batch_size': batch,
           'lr': 1e-3, 'warmup_steps': 10, 'log_every': 10, 'eval_every': 10 ** 9,
           'save_every': 10 ** 9, 'threads': 1}
    path = work / 'lazy.yaml'
    path.write_text(yaml.safe_dump(cfg), encoding='utf-8')
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, '-m', 'spatial_llava_ros.cli', 'train',
                             '--config', str(path), '--no-progress'], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sampler = Sampler(proc.pid)
    sampler.start()
    text, _ = proc.communicate()
    sampler.stop.set()
    sampler.join()
    if proc.returncode:
        raise SystemExit(f'lazy training failed:\n{text[-3000:]}')
    log = [json.loads(x) for x in (out / 'train_log.jsonl').read_text().splitlines() if x]
    return {'samples': sampler.samples, 'log': log, 'steps': steps, 'workers': workers,
            'batch_size': batch}


def run_in_memory(conv: Path) -> dict:
    code = (
        'import json, sys, time\n'
        'from spatial_llava_ros.model.prompt import PromptTemplate\n'
        'from spatial_llava_ros.training.config import TrainConfig\n'
        'from spatial_llava_ros.training.trainer import load_json_examples\n'
        'cfg = TrainConfig.from_dict({"data": {"source": "json", "json_path": sys.argv[1], '
        '"val_seeds": ""}})\n'
        'template = PromptTemplate.load()\n'
        'print("READY", flush=True); time.sleep(2.0)\n'
        'exs = load_json_examples(cfg, template)\n'
        'print("LOADED", len(exs), sum(e.image.nbytes for e in exs), flush=True)\n'
        'time.sleep(2.0)\n')
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, '-c', code, str(conv / 'train.json')], env=env,
                            cwd=REPO, stdout=subprocess.PIPE, text=True)
    sampler = Sampler(proc.pid)
    sampler.start()
    ready = proc.stdout.readline()
    assert ready.startswith('READY'), ready
    time.sleep(1.0)
    before = sampler.samples[-1][1]
    loaded = proc.stdout.readline().split()
    time.sleep(1.0)
    after = sampler.samples[-1][1]
    proc.wait()
    sampler.stop.set()
    sampler.join()
    return {'pss_before_mb': round(before, 1), 'pss_after_mb': round(after, 1),
            'records': int(loaded[1]), 'image_bytes': int(loaded[2]),
            'peak_mb': round(max(s[1] for s in sampler.samples), 1)}


def summarise(lazy: dict, mem: dict, frames: int, build_s: float, args) -> dict:
    samples = lazy['samples']
    busy = [s for s in samples if s[3] > 1]  # while the loader workers run
    tenths = []
    if busy:
        t0, t1 = busy[0][0], busy[-1][0]
        for k in range(10):
            lo, hi = t0 + (t1 - t0) * k / 10, t0 + (t1 - t0) * (k + 1) / 10
            win = [s for s in busy if lo <= s[0] <= hi]
            if win:
                tenths.append({'tenth': k + 1, 'peak_total_mb': round(max(s[1] for s in win), 1),
                               'peak_workers_mb': round(max(s[2] for s in win), 1)})
    first, last = tenths[0], tenths[-1]
    samples_seen = lazy['steps'] * lazy['batch_size']
    return {
        'frames': frames, 'scene_size': [args.width, args.height], 'build_s': round(build_s, 1),
        'lazy': {'steps': lazy['steps'], 'batch_size': lazy['batch_size'],
                 'workers': lazy['workers'], 'samples_drawn': samples_seen,
                 'peak_total_mb': round(max(s[1] for s in samples), 1),
                 'per_tenth': tenths,
                 'growth_first_to_last_tenth_mb': round(last['peak_total_mb']
                                                        - first['peak_total_mb'], 1),
                 'samples_per_s_last': lazy['log'][-1].get('samples_per_s')},
        'in_memory': {**mem, 'data_mb': round(mem['pss_after_mb'] - mem['pss_before_mb'], 1)},
    }


def markdown(res: dict) -> str:
    lz, mem = res['lazy'], res['in_memory']
    rows = '\n'.join(f"| {t['tenth']} | {t['peak_total_mb']} | {t['peak_workers_mb']} |"
                     for t in lz['per_tenth'])
    return f"""# Trainer data path: memory, lazy on-disk vs in memory

`bench/bench_train_data.py --frames {res['frames']}` (synthetic scenes {res['scene_size'][0]}x\
{res['scene_size'][1]}, converted with the real converter; tiny model, 1 thread, niced on the
shared 2-core machine). PSS (proportional set size: shared pages of forked workers counted once).

Lazy (`data.source: json`, {lz['workers']} loader workers, {lz['steps']} steps x batch \
{lz['batch_size']} = {lz['samples_drawn']} records drawn): peak PSS of trainer + workers per
tenth of the run:

| tenth of run | peak total MB | of it workers MB |
|---:|---:|---:|
{rows}

Peak {lz['peak_total_mb']} MB; last tenth minus first tenth: \
**{lz['growth_first_to_last_tenth_mb']} MB**.

In memory (`load_json_examples`, the trainer's path before: all {mem['records']} records and
their decoded images in one list): PSS {mem['pss_before_mb']} MB before, {mem['pss_after_mb']} MB
after loading: **+{mem['data_mb']} MB** ({mem['image_bytes'] / 2**20:.1f} MB of it decoded
images); it grows with the number of records, the lazy path does not.
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--frames', type=int, default=5000)
    ap.add_argument('--width', type=int, default=160)
    ap.add_argument('--height', type=int, default=120)
    ap.add_argument('--steps', type=int, default=300)
    ap.add_argument('--batch-size', type=int, default=8)
    ap.add_argument('--workers', type=int, default=2)
    ap.add_argument('--work', default='/tmp/bench_train_data')
    ap.add_argument('--out', default='bench/results/train_data_memory.json')
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    conv, build_s = build(work, args.frames, args.width, args.height)
    lazy = run_lazy(conv, work, args.steps, args.workers, args.batch_size)
    mem = run_in_memory(conv)
    res = summarise(lazy, mem, args.frames, build_s, args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1) + '\n', encoding='utf-8')
    out.with_suffix('.md').write_text(markdown(res), encoding='utf-8')
    print(markdown(res))
    return 0


if __name__ == '__main__':
    sys.exit(main())
