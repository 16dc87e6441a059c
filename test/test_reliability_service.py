"""QueryService basics: lifecycle errors, wait_idle timeout, counters and latency reporting."""

from __future__ import annotations

import threading

import pytest

from spatial_llava_ros.errors import InputError
from spatial_llava_ros.pipeline import NAVIGATE, NO_FRAME, PipelineConfig, QueryRequest
from spatial_llava_ros.reliability.memory import rss_bytes, rss_source
from spatial_llava_ros.reliability.replay import StampedTransforms
from spatial_llava_ros.reliability.service import QueryService


class Blocking:
    """A resolver that waits for a gate (never reached here: no frame means no scoring)."""

    def __init__(self) -> None:
        self.gate = threading.Event()

    def score(self, image, mark_ids, query):
        self.gate.wait(10.0)
        raise AssertionError('not reached')


def test_start_twice_is_an_input_error():
    service = QueryService(Blocking(), StampedTransforms()).start()
    try:
        with pytest.raises(InputError, match='already started'):
            service.start()
    finally:
        service.stop()
    assert not service.running


def test_no_frame_outcome_with_latency_and_counters():
    seen = []
    service = QueryService(Blocking(), StampedTransforms(), PipelineConfig(),
                           on_result=lambda t, o, dt: seen.append((t, o.code, dt)))
    with service:
        tickets = [service.submit(QueryRequest(f'q{i}', NAVIGATE)) for i in range(3)]
        assert service.wait_idle(30.0)
    assert [t for t, _, _ in seen] == tickets
    assert all(code == NO_FRAME and dt >= 0 for _, code, dt in seen)
    s = service.stats
    assert (s.submitted, s.answered, s.dropped, s.not_active) == (3, 3, 0, 0)
    assert s.codes == {NO_FRAME: 3}


def test_wait_idle_times_out_while_a_query_is_stuck():
    gate = threading.Event()

    class Stuck:
        def score(self, image, mark_ids, query):
            gate.wait(10.0)
            raise RuntimeError('released')

    import numpy as np

    from spatial_llava_ros.pipeline import FrameRecord, MarkInfo

    service = QueryService(Stuck(), StampedTransforms(), PipelineConfig(max_frame_age=0.0))
    service.add_frame(FrameRecord(1, 'cam', np.zeros((4, 4, 3), np.uint8),
                                  [MarkInfo(1, (0, 0, 2, 2))]))
    with service:
        service.submit(QueryRequest('stuck', NAVIGATE))
        assert service.wait_idle(0.3) is False
        gate.set()
        assert service.wait_idle(10.0) is True
    assert service.stats.internal_errors == 1
    assert 'released' in str(service.last_error)


def test_rss_is_a_plausible_positive_size():
    assert rss_source() in ('statm', 'maxrss')
    assert 10 * 2**20 < rss_bytes() < 64 * 2**30
