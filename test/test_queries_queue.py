"""The resolver's bounded query queue (ROS-free): drop-the-oldest and close/reopen."""

import threading

import pytest

from spatial_llava_ros.errors import InputError
from spatial_llava_ros.queries.queue import QueryQueue


def test_query_queue_drops_the_oldest_when_full():
    q = QueryQueue(2)
    assert q.put('a') is None and q.put('b') is None
    assert q.put('c') == 'a'  # full: the oldest goes
    assert len(q) == 2
    assert q.get() == 'b' and q.get() == 'c'
    assert q.get(timeout=0.01) is None
    with pytest.raises(InputError):
        QueryQueue(0)


def test_query_queue_close_wakes_the_worker_and_returns_the_waiting():
    q = QueryQueue(3)
    got = []
    worker = threading.Thread(target=lambda: got.append(q.get(timeout=5.0)))
    worker.start()
    assert q.close() == []
    worker.join(2.0)
    assert not worker.is_alive() and got == [None]
    assert q.put('late') == 'late'  # closed: handed straight back
    q.reopen()
    q.put('x')
    q.put('y')
    assert q.close() == ['x', 'y']


def test_jobs_yields_in_order_and_ends_once_closed():
    """The workers' loop: every job put before close comes out in order, then the loop ends."""
    q: QueryQueue[int] = QueryQueue(4)
    got: list[int] = []
    worker = threading.Thread(target=lambda: got.extend(q.jobs(poll_s=0.01)))
    worker.start()
    for i in range(3):
        q.put(i)
    while len(q):
        threading.Event().wait(0.01)
    q.close()
    worker.join(timeout=5)
    assert not worker.is_alive()
    assert got == [0, 1, 2]
