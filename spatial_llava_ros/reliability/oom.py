"""CUDA out-of-memory fallback around ``model.resolver.Resolver``: smaller batches, then CPU.

``Resolver.score_batch`` scores every query of a batch in one forward pass; on a busy GPU
that pass can run out of memory. ``OomFallbackResolver`` catches ``torch.OutOfMemoryError``
and, with a warning each time:

1. splits the batch in halves and scores them one after the other (down to one query);
2. for a single query: frees the CUDA cache and tries once more on the same device;
3. then moves the model to the CPU in float32 (slow, but the robot keeps answering) and
   scores there; every later call runs on the CPU too;
4. if it is already on the CPU (or ``cpu_fallback=False``): ``ResolveError`` naming the
   device, the number of marks and queries, which the pipeline turns into ``model_error``.

The Resolver has no public ``to(device)``; ``_move_to_cpu`` sets the fields it keeps per
device (model, dtype, vision backend, frame KV cache). Same interface as the Resolver for
``score`` / ``score_batch``; other attributes pass through.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np
import torch

from spatial_llava_ros.errors import ResolveError

LOG = logging.getLogger(__name__)
OutOfMemory = getattr(torch, 'OutOfMemoryError', torch.cuda.OutOfMemoryError)


class OomFallbackWarning(RuntimeWarning):
    """The resolver ran out of memory and fell back (smaller batch, retry or CPU)."""


class OomFallbackResolver:
    """Wraps a Resolver; see the module docstring."""

    def __init__(self, resolver: Any, cpu_fallback: bool = True) -> None:
        self.resolver = resolver
        self.cpu_fallback = bool(cpu_fallback)
        self.events: list[str] = []  # one line per fallback taken, for logs and reports

    def __getattr__(self, name: str) -> Any:
        return getattr(self.resolver, name)

    def _warn(self, message: str) -> None:
        self.events.append(message)
        LOG.warning(message)
        warnings.warn(message, OomFallbackWarning, stacklevel=3)

    def score(self, image: np.ndarray, mark_ids: list[int], query: str):
        """Like ``Resolver.score``, surviving CUDA out-of-memory."""
        return self.score_batch(image, mark_ids, [query])[0]

    def score_batch(self, image: np.ndarray, mark_ids: list[int], queries: list[str]):
        """Like ``Resolver.score_batch``, surviving CUDA out-of-memory."""
        queries = list(queries) if not isinstance(queries, str) else queries
        try:
            return self.resolver.score_batch(image, mark_ids, queries)
        except OutOfMemory as exc:
            first = exc
        device = self.resolver.device
        n_marks = len(mark_ids)
        if len(queries) > 1:
            half = len(queries) // 2
            self._warn(f'out of memory scoring {len(queries)} queries on {n_marks} marks '
                       f'on {device}; retrying as batches of {half} and '
                       f'{len(queries) - half}')
            return (self.score_batch(image, mark_ids, queries[:half])
                    + self.score_batch(image, mark_ids, queries[half:]))
        if getattr(device, 'type', 'cpu') != 'cpu':
            self._warn(f'out of memory scoring 1 query on {n_marks} marks on {device}; '
                       'emptying the CUDA cache and retrying once')
            _empty_cuda_cache()
            try:
                return self.resolver.score_batch(image, mark_ids, queries)
            except OutOfMemory as exc:
                first = exc
            if self.cpu_fallback:
                self._warn(f'out of memory again on {device}; moving the model to the '
                           'CPU (float32) for this and every later query')
                self._move_to_cpu()
                return self.resolver.score_batch(image, mark_ids, queries)
        raise ResolveError(f'out of memory scoring 1 query on {n_marks} marks on {device} '
                           f'(cpu_fallback={self.cpu_fallback}): {first}') from first

    def _move_to_cpu(self) -> None:
        from spatial_llava_ros.model.vision import TorchVision

        r = self.resolver
        cpu = torch.device('cpu')
        with r._lock:  # no query runs while the weights move
            r._frames.clear()  # KV caches live on the old device
            r.model.to(device=cpu, dtype=torch.float32)
            r.device, r.dtype = cpu, torch.float32
            r.loaded.device, r.loaded.dtype = cpu, torch.float32
            if isinstance(r.vision, TorchVision):
                r.vision = TorchVision(r.model)
        _empty_cuda_cache()


def _empty_cuda_cache() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
