"""Resumable checkpoints that do not care how many processes wrote or read them.

``checkpoint-N/trainer_state.pt`` holds the full (unsharded) weights of the trained module
and the optimiser state keyed by parameter name, the LR schedule, the step and the log
history. Rank 0 writes it atomically (a killed run never leaves half a checkpoint); every
rank reads the same file on resume, so ``output_dir`` must be on storage all nodes see.
Checkpoints of the single-process trainer before this format (positional optimiser state,
no ``format`` key) still resume.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

STATE_FILE = 'trainer_state.pt'
FORMAT = 2


def checkpoints(out: Path) -> list[Path]:
    """Complete checkpoints in ``out``, oldest first."""
    found = [p for p in out.glob('checkpoint-*') if (p / STATE_FILE).is_file()]
    return sorted(found, key=lambda p: int(p.name.split('-')[1]))


def save_state(out: Path, step: int, module_sd: dict, opt_sd: dict, sched, history: list,
               wall: float, keep: int) -> Path:
    """Write ``checkpoint-{step}`` (rank 0 only) and drop all but the ``keep`` newest."""
    ck = out / f'checkpoint-{step}'
    ck.mkdir(parents=True, exist_ok=True)
    tmp = ck / (STATE_FILE + '.tmp')
    state = {'format': FORMAT, 'step': step, 'module': module_sd, 'optimizer': opt_sd,
             'scheduler': sched.state_dict(), 'history': history, 'wall_s': wall}
    torch.save(state, tmp)
    tmp.replace(ck / STATE_FILE)  # atomic
    for old in checkpoints(out)[:-max(1, keep)]:
        shutil.rmtree(old, ignore_errors=True)
    return ck


def load_state(path: Path) -> dict:
    return torch.load(path / STATE_FILE, weights_only=False, map_location='cpu')


def truncate_log(log_path: Path, step: int) -> int:
    """Drop log lines of steps after ``step`` (written after the checkpoint a resumed run
    starts from), so every step appears once; returns how many were dropped."""
    if not log_path.is_file():
        return 0
    lines = [x for x in log_path.read_text(encoding='utf-8').splitlines() if x.strip()]
    kept = [x for x in lines if json.loads(x).get('step', 0) <= step]
    if len(kept) != len(lines):
        tmp = log_path.with_suffix('.tmp')
        tmp.write_text(''.join(x + '\n' for x in kept), encoding='utf-8')
        tmp.replace(log_path)
    return len(lines) - len(kept)
