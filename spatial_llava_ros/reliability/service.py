"""The resolver node's serving loop without ROS: bounded queue, one worker, one answer each.

``nodes/resolver_node.py`` runs this same shape through ``queries.jobs.JobRunner``
(QueryQueue -> worker thread -> ``pipeline.resolve_query`` -> one SpatialResult per query),
with the node's publishers, tf and Nav2 handed in. This service is a separate copy of that
loop with tickets, counters and latencies instead of those, so floods, soaks and fault
injection run against the real queue, pipeline and resolver on machines without ROS 2 and
give figures. Its failure codes and drop policy are the node's.

Drop policy (the queue's): when ``queue_size`` queries are waiting, the OLDEST waiting one
is dropped and answered at once with ``queue_full: ...``. Every submitted query gets exactly
one outcome through ``on_result``: answered by the worker, dropped, or ``not_active`` when
the service stops before it ran. A worker exception becomes ``internal_error: <type>: <msg>``
and the worker goes on with the next query.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from spatial_llava_ros.errors import InputError
from spatial_llava_ros.pipeline import (
    FrameBuffer,
    FrameRecord,
    PipelineConfig,
    QueryRequest,
    ScoresMarks,
    SpatialOutcome,
    TransformLookup,
    resolve_query,
)
from spatial_llava_ros.queries.jobs import INTERNAL, NOT_ACTIVE, QUEUE_FULL, failed_outcome
from spatial_llava_ros.queries.queue import QueryQueue

ResultCallback = Callable[[int, SpatialOutcome, float], None]  # ticket, outcome, latency s


@dataclass
class ServiceStats:
    """Counters that must add up: submitted == answered + dropped + not_active (+ waiting)."""

    submitted: int = 0
    answered: int = 0  # outcomes from the worker (success or a pipeline failure code)
    dropped: int = 0  # queue_full
    not_active: int = 0  # submitted while stopped, or still waiting at stop()
    internal_errors: int = 0  # worker exceptions turned into internal_error outcomes
    codes: dict[str, int] = field(default_factory=dict)  # outcome code ('' = success) -> count

    def count(self, outcome: SpatialOutcome) -> None:
        self.codes[outcome.code] = self.codes.get(outcome.code, 0) + 1


@dataclass
class _Job:
    ticket: int
    request: QueryRequest
    submitted: float  # time.perf_counter()


class QueryService:
    """Serve queries on the newest frame with one worker thread and a bounded queue."""

    def __init__(self, resolver: ScoresMarks, transforms: TransformLookup,
                 config: PipelineConfig | None = None, queue_size: int = 8,
                 frames_kept: int = 5, on_result: ResultCallback | None = None,
                 clock_ns: Callable[[], int] = time.time_ns) -> None:
        self.resolver = resolver
        self.transforms = transforms
        self.config = config or PipelineConfig()
        self.frames = FrameBuffer(frames_kept)
        self.queue: QueryQueue[_Job] = QueryQueue(queue_size)
        self.queue.close()  # opened by start()
        self.stats = ServiceStats()
        self.on_result = on_result
        self.clock_ns = clock_ns
        self.last_error: BaseException | None = None
        self._tickets = itertools.count()
        self._lock = threading.Lock()  # stats + callback ordering
        self._idle = threading.Condition(self._lock)
        self._in_flight = 0
        self._worker: threading.Thread | None = None

    # ---- lifecycle -----------------------------------------------------------------------

    def start(self) -> QueryService:
        if self._worker is not None:
            raise InputError('QueryService already started')
        self.queue.reopen()
        self._worker = threading.Thread(target=self._work, name='query_service', daemon=True)
        self._worker.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop taking queries; waiting ones are answered ``not_active``; join the worker."""
        for job in self.queue.close():
            self._emit(job, self._failed(job, NOT_ACTIVE, 'the service stopped before this '
                                         'query ran'), 'not_active')
        if self._worker is not None:
            self._worker.join(timeout)
            self._worker = None

    def __enter__(self) -> QueryService:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._worker is not None and self._worker.is_alive()

    # ---- inputs --------------------------------------------------------------------------

    def add_frame(self, record: FrameRecord) -> bool:
        """A new marked frame (camera callback); False if older than the newest kept."""
        return self.frames.add(record)

    def submit(self, request: QueryRequest) -> int:
        """Queue a query; returns its ticket. The outcome arrives through ``on_result``."""
        with self._lock:
            ticket = next(self._tickets)
            self.stats.submitted += 1
            self._in_flight += 1
        job = _Job(ticket, request, time.perf_counter())
        dropped = self.queue.put(job)
        if dropped is job:
            self._emit(job, self._failed(job, NOT_ACTIVE, 'the service is not running'),
                       'not_active')
        elif dropped is not None:
            self._emit(dropped, self._failed(
                dropped, QUEUE_FULL, f'{self.queue.maxsize} queries were waiting for the '
                f'model; this one (ticket {dropped.ticket}), the oldest, was dropped'),
                'dropped')
        return ticket

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until every submitted query has its outcome; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._idle:
            while self._in_flight:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._idle.wait(left)
        return True

    # ---- worker --------------------------------------------------------------------------

    def _work(self) -> None:
        for job in self.queue.jobs():
            try:
                outcome = resolve_query(job.request, self.frames.latest(), self.resolver,
                                        self.transforms, self.config, self.clock_ns())
            except Exception as exc:  # noqa: BLE001 - reported in the outcome, worker lives on
                self.last_error = exc
                outcome = self._failed(job, INTERNAL, f'{type(exc).__name__}: {exc}')
                self._emit(job, outcome, 'internal_errors')
                continue
            self._emit(job, outcome, 'answered')

    def _failed(self, job: _Job, code: str, detail: str) -> SpatialOutcome:
        return failed_outcome(job.request, code, detail, self.config.target_frame)

    def _emit(self, job: _Job, outcome: SpatialOutcome, counter: str) -> None:
        latency = time.perf_counter() - job.submitted
        with self._lock:
            setattr(self.stats, counter, getattr(self.stats, counter) + 1)
            self.stats.count(outcome)
            callback = self.on_result
        try:
            if callback is not None:
                callback(job.ticket, outcome, latency)
        except Exception as exc:  # noqa: BLE001 - a broken consumer must not kill the worker
            self.last_error = exc
        finally:
            with self._idle:
                self._in_flight -= 1
                self._idle.notify_all()
