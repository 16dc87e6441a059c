"""Peak memory of writing the trainer's prepared-frames cache: torch.save against the
streamed pickle of training/frames_cache.py, on the same frames, each in a forked child.

    python bench/bench_frames_cache.py --frames 400 --out bench/results/frames_cache_memory.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

import torch
from tqdm import tqdm

from spatial_llava_ros.training.frames_cache import save_frames
from spatial_llava_ros.training.synthetic import SomSettings, training_frame


def _rss_mb() -> float:
    with open('/proc/self/statm') as fh:
        return int(fh.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 1e6


def _peak_in_child(write, blob: dict, path: Path) -> dict:
    """Fork, write, and report the child's peak RSS above its RSS at the fork."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns into the parent's code, even when the write fails
        try:
            os.close(read_fd)
            start = _rss_mb()
            t0 = time.perf_counter()
            write(blob, path)
            wall = time.perf_counter() - t0
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3  # KiB on Linux
            os.write(write_fd, json.dumps({
                'extra_mb': round(peak - start, 1), 'wall_s': round(wall, 2),
                'file_mb': round(path.stat().st_size / 1e6, 1)}).encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    os.waitpid(pid, 0)
    with os.fdopen(read_fd) as fh:
        return json.loads(fh.read())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--frames', type=int, default=400)
    ap.add_argument('--out', type=Path, default=None)
    args = ap.parse_args()
    settings = SomSettings(320, 240, 40.0, 'number', 'depth')
    frames = [training_frame(100000 + i, settings, 40, 16, dense=True, free=True)
              for i in tqdm(range(args.frames), desc='prepare', unit='scene')]
    blob = {'seeds': list(range(args.frames)), 'settings': 'bench', 'frames': frames}
    with tempfile.TemporaryDirectory() as tmp:
        result = {
            'frames': args.frames,
            'torch_save': _peak_in_child(lambda b, p: torch.save(b, p), blob,
                                         Path(tmp) / 'a.pt'),
            'streamed_pickle': _peak_in_child(lambda b, p: save_frames(p, b), blob,
                                              Path(tmp) / 'b.pt'),
        }
    # one run, both writers on the same frames: a ratio, not an absolute speed
    result['wall_ratio_torch_over_streamed'] = round(
        result['torch_save']['wall_s'] / max(1e-3, result['streamed_pickle']['wall_s']), 1)
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + '\n')


if __name__ == '__main__':
    main()
