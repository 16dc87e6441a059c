"""The resolver node's bounded query queue, with a stated drop policy.

Queries arrive on the executor (topic callback, action goals) and are answered one at a
time by the inference worker. The queue never grows past ``maxsize``: when it is full the
OLDEST waiting query is dropped (the operator's latest words win) and handed back to the
caller, which answers it with success=false, ``queue_full: ...``, so every query still
gets exactly one SpatialResult.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from typing import Generic, TypeVar

from spatial_llava_ros.errors import InputError

T = TypeVar('T')


class QueryQueue(Generic[T]):
    """Thread-safe bounded FIFO; ``put`` returns the job it dropped, if any."""

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise InputError(f'query queue size must be >= 1, got {maxsize}')
        self.maxsize = int(maxsize)
        self._items: deque[T] = deque()
        self._cond = threading.Condition()
        self._closed = False

    def put(self, item: T) -> T | None:
        with self._cond:
            if self._closed:
                return item
            dropped = self._items.popleft() if len(self._items) >= self.maxsize else None
            self._items.append(item)
            self._cond.notify()
            return dropped

    def get(self, timeout: float | None = None) -> T | None:
        """The oldest job, or None after ``timeout`` seconds or once closed and empty."""
        with self._cond:
            if not self._items and not self._closed:
                self._cond.wait(timeout)
            return self._items.popleft() if self._items else None

    def jobs(self, poll_s: float = 0.5) -> Iterator[T]:
        """Each job as it arrives, until the queue is closed: the inference worker's loop."""
        while True:
            item = self.get(timeout=poll_s)
            if item is not None:
                yield item
            elif self.closed:
                return

    def close(self) -> list[T]:
        """Stop accepting jobs; returns the ones still waiting (to be answered as dropped)."""
        with self._cond:
            self._closed = True
            left = list(self._items)
            self._items.clear()
            self._cond.notify_all()
            return left

    def reopen(self) -> None:
        with self._cond:
            self._closed = False

    @property
    def closed(self) -> bool:
        with self._cond:
            return self._closed

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)
