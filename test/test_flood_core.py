"""Floods against the running core pipeline: QueryService (queries.queue.QueryQueue +
worker thread + pipeline.resolve_query) with a tiny random Spatial-LLaVA on a marked frame.

Checked: every submitted query gets exactly ONE outcome; accepted ones are answered (here
all succeed: good frame, good tf), dropped ones come back ``queue_full`` with the queue
size in the reason and are the OLDEST waiting (drop policy of queries/queue.py); counters add
up; RSS after the flood is within a loose bound of RSS before (figures: bench/flood.py).
No timed asserts: rates are targets, the checks are on counts and memory.
"""

# ruff: noqa: F811 - pytest fixtures imported from test_property_pipeline are arguments
from __future__ import annotations

import gc
import threading
import time

import pytest
from test_property_pipeline import resolver, scene  # noqa: F401 - shared fixtures (pytest finds them here)

from spatial_llava_ros.pipeline import NAVIGATE, PipelineConfig, QueryRequest
from spatial_llava_ros.reliability.memory import rss_bytes
from spatial_llava_ros.reliability.service import QUEUE_FULL, QueryService

QUEUE = 8
RSS_SLACK = 64 * 2**20  # loose: the flood must not grow memory by more than this


class Recorder:
    """on_result sink: outcomes per ticket, in arrival order."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_ticket: dict[int, list] = {}
        self.order: list[int] = []

    def __call__(self, ticket, outcome, latency) -> None:
        with self.lock:
            self.by_ticket.setdefault(ticket, []).append(outcome)
            self.order.append(ticket)


def make_service(resolver, scene, rec):
    _, _, record, tf = scene
    service = QueryService(resolver, tf, PipelineConfig(base_frame='', max_frame_age=0.0),
                           queue_size=QUEUE, on_result=rec)
    service.add_frame(record)
    return service


def check_accounting(service, rec, tickets) -> tuple[list, list]:
    assert service.wait_idle(120.0), 'queries still waiting after 120 s'
    missing = [t for t in tickets if t not in rec.by_ticket]
    twice = [t for t, outs in rec.by_ticket.items() if len(outs) != 1]
    assert not missing, f'{len(missing)} queries never got an outcome'
    assert not twice, f'{len(twice)} queries got more than one outcome'
    s = service.stats
    assert s.submitted == len(tickets)
    assert s.answered + s.dropped + s.not_active + s.internal_errors == s.submitted
    answered = [t for t in tickets if rec.by_ticket[t][0].code != QUEUE_FULL]
    dropped = [t for t in tickets if rec.by_ticket[t][0].code == QUEUE_FULL]
    assert len(dropped) == s.dropped and len(answered) == s.answered
    for t in answered:
        out = rec.by_ticket[t][0]
        assert out.success, out.reason
    for t in dropped:
        out = rec.by_ticket[t][0]
        assert not out.success and f'{QUEUE} queries were waiting' in out.reason
    return answered, dropped


def test_burst_of_1000_queries(resolver, scene):
    rec = Recorder()
    with make_service(resolver, scene, rec) as service:
        for i in range(20):  # warm-up, one at a time: caches, allocator
            service.submit(QueryRequest(f'the chair {i % 3}', NAVIGATE))
            service.wait_idle(60.0)
        gc.collect()
        before = rss_bytes()
        start = service.stats.submitted
        tickets = [service.submit(QueryRequest(f'the object number {i}', NAVIGATE))
                   for i in range(1000)]
        answered, dropped = check_accounting(service, rec, list(range(start)) + tickets)
        gc.collect()
        after = rss_bytes()
    assert not service.running
    assert len(answered) >= QUEUE  # at least the last QUEUE queries ran
    assert set(tickets[-QUEUE:]) <= set(answered)  # newest never dropped: drop-OLDEST
    assert dropped, 'a 1000-query burst on an 8-slot queue must drop some'
    first_drop = min(dropped)
    assert all(t in dropped or t in answered for t in tickets)
    # FIFO service order among the answered, and drops come in submission order too
    assert sorted(t for t in rec.order if t in set(dropped)) == \
        [t for t in rec.order if t in set(dropped)]
    assert first_drop >= start
    assert after - before < RSS_SLACK, f'RSS grew {(after - before) / 2**20:.1f} MB'


def test_sustained_50_per_second(resolver, scene):
    rec = Recorder()
    rate, seconds = 50.0, 3.0
    with make_service(resolver, scene, rec) as service:
        tickets = []
        t0 = time.monotonic()
        n = int(rate * seconds)
        for i in range(n):
            delay = t0 + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            tickets.append(service.submit(QueryRequest(f'the lamp {i % 7}', NAVIGATE)))
        answered, dropped = check_accounting(service, rec, tickets)
    assert len(answered) + len(dropped) == n


def test_stop_answers_waiting_queries_not_active(resolver, scene):
    rec = Recorder()
    gate = threading.Event()

    class Slow:
        def score(self, image, mark_ids, query):
            gate.wait(10.0)
            return resolver.score(image, mark_ids, query)

    service = make_service(Slow(), scene, rec).start()
    tickets = [service.submit(QueryRequest(f'q {i}', NAVIGATE)) for i in range(5)]
    time.sleep(0.2)  # the worker holds the first query in Slow.score
    stopper = threading.Thread(target=service.stop)
    stopper.start()
    time.sleep(0.2)
    gate.set()
    stopper.join(30.0)
    assert service.wait_idle(10.0)
    codes = [rec.by_ticket[t][0].code for t in tickets]
    assert codes.count('not_active') >= 3, codes
    assert all(len(rec.by_ticket[t]) == 1 for t in tickets)
    late = service.submit(QueryRequest('after stop', NAVIGATE))
    assert rec.by_ticket[late][0].code == 'not_active'


@pytest.mark.parametrize('size', [0, -1])
def test_queue_size_must_be_positive(resolver, scene, size):
    from spatial_llava_ros.errors import InputError

    with pytest.raises(InputError, match=str(size)):
        QueryService(resolver, scene[3], queue_size=size)
