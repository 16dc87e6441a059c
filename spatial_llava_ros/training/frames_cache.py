"""The prepared-frames cache (``frames.pt``): written as a stream, read back either way.

``torch.save`` pickles the whole list into one in-memory buffer and copies it again before
writing, so caching 6,000 frames (3.7 GB) peaked at ~18 GB and a second run beside it was
killed for memory. A plain pickle streams to the file one frame at a time; the file is
written beside its final name and renamed, so a run killed mid-write leaves no half cache.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path


def save_frames(path: Path, blob: dict) -> None:
    """Write ``blob`` ({'seeds', 'settings', 'frames'}) to ``path`` atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + '.partial')
    with open(tmp, 'wb') as fh:
        pickle.dump(blob, fh, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, path)


def load_frames(path: Path) -> dict | None:
    """The cached blob, or None when ``path`` is missing or unreadable (then it is rebuilt).
    Caches written by ``torch.save`` (before this module) still load."""
    if not path.is_file():
        return None
    try:
        with open(path, 'rb') as fh:
            blob = pickle.load(fh)
    except (pickle.UnpicklingError, EOFError, ValueError, AttributeError, ImportError):
        try:
            import torch

            blob = torch.load(path, weights_only=False)
        except Exception:  # noqa: BLE001 - any unreadable cache is simply rebuilt
            return None
    return blob if isinstance(blob, dict) else None
