"""The resolver node's job bookkeeping without ROS (queries.jobs): every job is finished
exactly once, by the worker, as ``queue_full`` when dropped, ``not_active`` when stopped,
or ``internal_error`` when answering raised; action goals pass cancel requests on.

``answer`` here is a plain function the test controls (it can block until released), in
place of ``JobAnswerer.answer`` and the model, which test_queries_answer.py runs for real:
these tests are about the queue, the worker thread and the finishing, not the model.
"""

from __future__ import annotations

import threading

import pytest

from spatial_llava_ros.pipeline import LOCATE, NAVIGATE, QueryRequest, SpatialOutcome
from spatial_llava_ros.queries.jobs import (
    CANCELED,
    GOAL_ABORTED,
    GOAL_CANCELED,
    GOAL_SUCCEEDED,
    INTERNAL,
    NOT_ACTIVE,
    QUEUE_FULL,
    JobRunner,
    failed_outcome,
    feedback_fields,
    goal_job,
    goal_verdict,
    topic_job,
)

WAIT = 30.0  # seconds any single wait may take on a loaded machine before the test fails


class Rig:
    """A JobRunner whose answers the test releases; records what was finished and logged."""

    def __init__(self, queue_size: int = 2) -> None:
        self.gate = threading.Event()
        self.gate.set()
        self.started = threading.Semaphore(0)  # one release per answer begun
        self.answered: list[str] = []
        self.finished: list = []
        self.lines: list[tuple[str, str]] = []
        self.ticks = iter(range(1000, 10**9, 1000))
        self.runner = JobRunner(queue_size, answer=self.answer, on_finished=self.finished.append,
                                clock_ns=lambda: next(self.ticks),
                                log=lambda level, line: self.lines.append((level, line)),
                                default_frame='map')

    def answer(self, job) -> SpatialOutcome:
        self.started.release()
        assert self.gate.wait(WAIT), 'the test never released the answer'
        if job.request.text == 'boom':
            raise RuntimeError('resolver bug (test)')
        self.answered.append(job.request.text)
        out = SpatialOutcome(job.request.text, job.request.action, True, target_frame='map')
        out.mark_id, out.confidence = 3, 0.9
        return out

    def job(self, text: str):
        return topic_job(QueryRequest(text, NAVIGATE), navigate=False)


def test_topic_and_goal_jobs_go_to_nav2_only_when_asked():
    nav = QueryRequest('the chair', NAVIGATE)
    assert topic_job(nav, True).navigate and not topic_job(nav, False).navigate
    assert not topic_job(QueryRequest('the chair', LOCATE), True).navigate
    assert not topic_job(nav, True).wait_for_nav
    got = []
    goal = goal_job(nav, True, got.append)
    assert goal.navigate and goal.wait_for_nav
    assert not goal_job(QueryRequest('x', LOCATE), True, None).navigate
    goal.feedback('resolving', 0.2)
    assert got[0]['stage'] == 'resolving' and got[0]['progress'] == 0.2
    assert got[0]['distance_remaining'] != got[0]['distance_remaining']  # NaN: not navigating
    assert feedback_fields('navigating', 0.7, 2.5)['distance_remaining'] == 2.5


def test_failed_outcome_keeps_the_query_frame_or_takes_the_default():
    out = failed_outcome(QueryRequest('q', NAVIGATE), NOT_ACTIVE, 'why', 'map')
    assert not out.success and out.code == NOT_ACTIVE and out.reason == 'not_active: why'
    assert out.target_frame == 'map' and out.action == NAVIGATE
    assert failed_outcome(QueryRequest('q', 0, 'odom'), QUEUE_FULL, 'x', 'map').target_frame \
        == 'odom'


def test_a_stopped_runner_answers_not_active_with_or_without_the_hint():
    rig = Rig()
    assert not rig.runner.active
    topic, goal = rig.job('topic query'), rig.job('goal')
    rig.runner.submit(topic, check_active=True)
    rig.runner.submit(goal)
    assert topic.done.is_set() and goal.done.is_set()
    assert topic.outcome.reason == ('not_active: the resolver is not active '
                                    '(ros2 lifecycle set <node> activate)')
    assert goal.outcome.reason == 'not_active: the resolver is not active'
    assert rig.finished == [topic, goal] and topic.now_ns == 1000 and goal.now_ns == 2000
    assert rig.lines == [('warning', f"'topic query': {topic.outcome.reason}"),
                         ('warning', f"'goal': {goal.outcome.reason}")]


def test_a_full_queue_drops_the_oldest_waiting_and_every_job_finishes_once():
    rig = Rig(queue_size=2)
    rig.gate.clear()
    rig.runner.start()
    try:
        jobs = [rig.job(f'q{i}') for i in range(4)]
        rig.runner.submit(jobs[0])
        assert rig.started.acquire(timeout=WAIT)  # q0 is with the model, q1.. wait
        for job in jobs[1:]:
            rig.runner.submit(job)
        assert jobs[1].done.is_set(), 'the oldest waiting one is answered at once'
        assert jobs[1].outcome.code == QUEUE_FULL
        assert jobs[1].outcome.reason == ('queue_full: 2 queries were waiting for the model; '
                                          'this one, the oldest, was dropped')
        rig.gate.set()
        for job in jobs:
            assert job.done.wait(WAIT), job.request.text
    finally:
        rig.gate.set()
        rig.runner.stop()
    assert rig.answered == ['q0', 'q2', 'q3']
    assert sorted(j.request.text for j in rig.finished) == ['q0', 'q1', 'q2', 'q3']
    assert all(j.outcome.success for j in jobs if j is not jobs[1])


def test_stop_answers_the_waiting_not_active_and_lets_the_running_one_finish():
    rig = Rig(queue_size=4)
    rig.gate.clear()
    rig.runner.start()
    running, waiting = rig.job('running'), rig.job('waiting')
    rig.runner.submit(running)
    assert rig.started.acquire(timeout=WAIT)
    rig.runner.submit(waiting)
    stopper = threading.Thread(target=rig.runner.stop)
    stopper.start()
    assert waiting.done.wait(WAIT)
    assert waiting.outcome.reason == ('not_active: the resolver was deactivated before this '
                                      'query ran')
    assert not rig.runner.active
    rig.gate.set()
    stopper.join(WAIT)
    assert not stopper.is_alive()
    assert running.done.is_set() and running.outcome.success
    assert len(rig.finished) == 2
    late = rig.job('late')
    rig.runner.submit(late)  # stopped: handed straight back by the queue
    assert late.outcome.code == NOT_ACTIVE
    rig.runner.start()  # activate again: answered by a new worker
    again = rig.job('again')
    rig.runner.submit(again)
    assert again.done.wait(WAIT) and again.outcome.success
    rig.runner.stop()


def test_an_answer_that_raises_is_internal_error_and_the_worker_goes_on():
    rig = Rig()
    rig.runner.start()
    try:
        boom, after = rig.job('boom'), rig.job('after')
        rig.runner.submit(boom)
        assert boom.done.wait(WAIT)
        rig.runner.submit(after)
        assert after.done.wait(WAIT)
    finally:
        rig.runner.stop()
    assert boom.outcome.code == INTERNAL
    assert boom.outcome.reason == 'internal_error: RuntimeError: resolver bug (test)'
    assert ('error', "query 'boom' crashed: RuntimeError: resolver bug (test)") in rig.lines
    assert after.outcome.success
    assert ('info', "'after' -> mark 3 (p=0.90)") in rig.lines


def test_run_goal_passes_the_cancel_request_on_and_waits_for_the_answer():
    seen_cancel = threading.Event()

    def answer(job):  # what JobAnswerer does with a canceled job, waiting here for it
        assert job.cancel.wait(WAIT)
        seen_cancel.set()
        return failed_outcome(job.request, CANCELED, 'canceled before it ran', 'map')

    feedback = []
    runner = JobRunner(2, answer=answer, on_finished=lambda job: None, clock_ns=lambda: 5,
                       log=lambda level, line: None, default_frame='map')
    runner.start()
    asks = iter([False, False, True])
    try:
        job = runner.run_goal(goal_job(QueryRequest('go', NAVIGATE), True, feedback.append),
                              cancel_requested=lambda: next(asks, True), poll_s=0.01)
    finally:
        runner.stop()
    assert seen_cancel.is_set() and job.done.is_set()
    assert feedback[0]['stage'] == 'waiting_for_frame' and feedback[0]['progress'] == 0.0
    assert job.outcome.code == CANCELED and job.now_ns == 5
    assert goal_verdict(job.outcome, cancel_requested=True) == GOAL_CANCELED


@pytest.mark.parametrize('success,code,cancel_requested,want', [
    (True, '', False, GOAL_SUCCEEDED),
    (True, '', True, GOAL_SUCCEEDED),  # finished before the cancel took effect
    (False, CANCELED, True, GOAL_CANCELED),
    (False, CANCELED, False, GOAL_ABORTED),  # deactivated mid-navigation: not a cancel
    (False, QUEUE_FULL, True, GOAL_ABORTED),
])
def test_goal_verdict(success, code, cancel_requested, want):
    out = SpatialOutcome('q', NAVIGATE, success)
    if not success:
        out.fail(code, 'x')
    assert goal_verdict(out, cancel_requested) == want


def test_a_publish_that_raises_still_finishes_the_job_and_the_worker_goes_on():
    rig = Rig()
    broken = {'publish fails'}

    def on_finished(job):
        if job.request.text in broken:
            raise RuntimeError('publisher gone (test)')
        rig.finished.append(job)

    rig.runner.on_finished = on_finished
    rig.runner.start()
    try:
        first, second = rig.job('publish fails'), rig.job('next')
        rig.runner.submit(first)
        assert first.done.wait(WAIT), 'an action goal waiting on it would hang'
        rig.runner.submit(second)
        assert second.done.wait(WAIT)
    finally:
        rig.runner.stop()
    assert isinstance(rig.runner.last_error, RuntimeError)
    assert rig.finished == [second] and second.outcome.success
