"""The hand-off of a goal to Nav2's NavigateToPose (queries.nav2), without ROS.

Nav2 and rclpy's ActionClient cannot exist on a machine without ROS 2, so ``Nav2StandIn``
takes their place: ``concurrent.futures.Future`` objects for rclpy's futures, a goal handle
with ``accepted`` / ``get_result_async`` / ``cancel_goal_async`` and a GetResult response
with ``status`` and ``result``, as rclpy gives them. The same exchange against a real
rclpy action server is in test_nodes_nav2.py and test_faults_ros.py (ROS 2 only).
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from types import SimpleNamespace

import numpy as np
import pytest

from spatial_llava_ros.geometry.goals import GoalPose
from spatial_llava_ros.pipeline import NAVIGATE, QueryRequest, SpatialOutcome
from spatial_llava_ros.queries.jobs import (
    CANCELED,
    NAV_FAILED,
    NAV_REJECTED,
    NAV_UNAVAILABLE,
    goal_job,
    topic_job,
)
from spatial_llava_ros.queries.nav2 import (
    STATUS_SUCCEEDED,
    nav_failure_reason,
    nav_result_line,
    send_nav_goal,
    wait_future,
)

WAIT = 30.0
ABORTED = 6


class Nav2StandIn:
    """A scripted NavigateToPose server plus client (test double, see the module docstring)."""

    def __init__(self, available: bool = True, answers: bool = True, accept: bool = True):
        self.available, self.answers, self.accept = available, answers, accept
        self.result: Future = Future()
        self.on_distance = None
        self.canceled = threading.Event()
        self.sent = 0

    def wait_for_server(self, timeout_s: float) -> bool:
        return self.available

    def send_goal(self, on_distance) -> Future:
        self.sent += 1
        self.on_distance = on_distance
        sent: Future = Future()
        if self.answers:
            handle = SimpleNamespace(accepted=self.accept,
                                     get_result_async=lambda: self.result,
                                     cancel_goal_async=self.canceled.set)
            sent.set_result(handle)
        return sent

    def finish(self, status: int, error_code: int = 0, error_msg: str = '') -> None:
        self.result.set_result(SimpleNamespace(
            status=status, result=SimpleNamespace(error_code=error_code, error_msg=error_msg)))


def outcome() -> SpatialOutcome:
    out = SpatialOutcome('the chair', NAVIGATE, True, target_frame='map')
    out.goal = GoalPose('map', np.array([1.23456, -0.5, 0.0]), np.array([0.0, 0.0, 0.0, 1.0]),
                        0.0)
    return out


def go(job, out, nav: Nav2StandIn, timeout: float = 2.0, active=lambda: True, log=None):
    send_nav_goal(job, out, action_name='navigate_to_pose', server_timeout=timeout,
                  wait_for_server=nav.wait_for_server, send_goal=nav.send_goal,
                  active=active, log=log or (lambda level, line: None))


def action_job(feedback: list):
    return goal_job(QueryRequest('the chair', NAVIGATE), True, feedback.append)


def test_no_server_is_nav_unavailable():
    feedback, out = [], outcome()
    nav = Nav2StandIn(available=False)
    go(action_job(feedback), out, nav)
    assert out.code == NAV_UNAVAILABLE and nav.sent == 0
    assert out.reason == ("nav_unavailable: Nav2 action server 'navigate_to_pose' not "
                          'available after 2.0 s')
    assert [(f['stage'], f['progress']) for f in feedback] == [('navigating', 0.6)]


def test_an_unanswered_goal_request_is_nav_unavailable_after_the_timeout():
    out = outcome()
    go(action_job([]), out, Nav2StandIn(answers=False), timeout=0.3)
    assert out.reason == ("nav_unavailable: Nav2 'navigate_to_pose' did not answer the goal "
                          'request within 0.3 s')


def test_a_rejected_goal_names_where_it_was():
    out = outcome()
    go(action_job([]), out, Nav2StandIn(accept=False))
    assert not out.success and out.code == NAV_REJECTED
    assert out.reason == ("nav_rejected: Nav2 'navigate_to_pose' rejected the goal "
                          '([1.235, -0.5] in map)')


def test_an_action_goal_waits_for_nav2_and_relays_its_distance():
    feedback, out, job = [], outcome(), None
    nav = Nav2StandIn()
    job = action_job(feedback)
    worker = threading.Thread(target=go, args=(job, out, nav))
    worker.start()
    while nav.on_distance is None and worker.is_alive():
        worker.join(0.01)
    nav.on_distance(2.5)
    nav.finish(STATUS_SUCCEEDED)
    worker.join(WAIT)
    assert not worker.is_alive()
    assert out.success and out.code == '' and job.nav_status == STATUS_SUCCEEDED
    assert feedback[-1] == {'stage': 'navigating', 'progress': 0.7, 'distance_remaining': 2.5}


def test_an_aborted_goal_is_nav_failed_with_nav2s_error():
    nav, out, job = Nav2StandIn(), outcome(), action_job([])
    nav.finish(ABORTED, 104, 'no valid path')  # already done when the node asks
    go(job, out, nav)
    assert not out.success and out.code == NAV_FAILED and job.nav_status == ABORTED
    assert out.reason == ('nav_failed: Nav2 NavigateToPose finished ABORTED '
                          '(error_code 104: no valid path)')


@pytest.mark.parametrize('how', ['cancel', 'deactivate'])
def test_cancel_or_deactivate_while_navigating_cancels_the_nav2_goal(how):
    nav, out, job = Nav2StandIn(), outcome(), action_job([])
    active = threading.Event()
    active.set()
    worker = threading.Thread(target=go, args=(job, out, nav),
                              kwargs={'active': active.is_set})
    worker.start()
    while nav.on_distance is None and worker.is_alive():
        worker.join(0.01)
    (job.cancel.set if how == 'cancel' else active.clear)()
    worker.join(WAIT)
    assert not worker.is_alive() and nav.canceled.is_set()
    assert out.code == CANCELED and out.reason == 'canceled: navigation canceled'
    assert job.nav_status == 0


def test_a_topic_query_does_not_wait_and_logs_nav2s_result():
    lines = []
    for status, error in ((STATUS_SUCCEEDED, 0), (ABORTED, 104)):
        nav, out = Nav2StandIn(), outcome()
        job = topic_job(QueryRequest('the chair', NAVIGATE), navigate=True)
        go(job, out, nav, log=lambda level, line: lines.append((level, line)))
        assert out.success and len(lines) == (0 if status == STATUS_SUCCEEDED else 1)
        nav.finish(status, error, 'no valid path' if error else '')
    assert lines == [('info', "Nav2 reached the goal for 'the chair'"),
                     ('warning', "'the chair': nav_failed: Nav2 NavigateToPose finished "
                                 'ABORTED (error_code 104: no valid path)')]


def test_nav_failure_reason():
    assert nav_failure_reason(6) == 'nav_failed: Nav2 NavigateToPose finished ABORTED'
    assert 'error_code 104: no valid path' in nav_failure_reason(6, 104, 'no valid path')
    res = SimpleNamespace(status=5, result=SimpleNamespace())  # Humble: no error fields
    assert nav_result_line('q', res) == ('warning',
                                         "'q': nav_failed: Nav2 NavigateToPose finished CANCELED")


def test_wait_future_times_out_gives_up_or_returns_when_done():
    pending: Future = Future()
    assert not wait_future(pending, 0.05, poll_s=0.01)
    assert not wait_future(pending, None, give_up=lambda: True, poll_s=0.01)
    done: Future = Future()
    done.set_result(1)
    assert wait_future(done, None)
