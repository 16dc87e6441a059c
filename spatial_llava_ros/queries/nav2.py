"""Handing a goal pose to Nav2's NavigateToPose, and reading its answer, without ROS.

The decisions of that exchange live here: wait for the server (``nav_unavailable``), send
the goal and wait for its acceptance (``nav_unavailable`` when unanswered,
``nav_rejected``), relay Nav2's distance as action feedback, then either log Nav2's result
when it comes (topic queries) or wait for it (action goals: ``canceled`` when the goal is
canceled or the node deactivated meanwhile, ``nav_failed`` with Nav2's status and error).

The node passes its rclpy ``ActionClient`` in through two callables. What comes back is
read by attribute, as rclpy gives it: ``send_goal`` returns a future (``add_done_callback``,
``result``) of a goal handle (``accepted``, ``get_result_async()``, ``cancel_goal_async()``)
whose result future gives ``status`` and ``result`` (``error_code``, ``error_msg`` on Jazzy).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from spatial_llava_ros.pipeline import SpatialOutcome
from spatial_llava_ros.queries.jobs import CANCELED, NAV_FAILED, NAV_REJECTED, NAV_UNAVAILABLE, Job
from spatial_llava_ros.queries.log_lines import LogFn, query_for_log

# action_msgs/GoalStatus
GOAL_STATUS = {0: 'UNKNOWN', 1: 'ACCEPTED', 2: 'EXECUTING', 3: 'CANCELING', 4: 'SUCCEEDED',
               5: 'CANCELED', 6: 'ABORTED'}
STATUS_SUCCEEDED = 4


class FutureLike(Protocol):
    """What is used of an rclpy (or concurrent.futures) Future."""

    def add_done_callback(self, fn: Callable[[Any], Any]) -> Any: ...

    def result(self) -> Any: ...


# called with Nav2's distance_remaining (metres) for each NavigateToPose feedback
DistanceSink = Callable[[float], None]


def nav_failure_reason(status: int, error_code: int = 0, error_msg: str = '') -> str:
    """One line for a Nav2 NavigateToPose goal that did not succeed (Jazzy adds error_code)."""
    name = GOAL_STATUS.get(int(status), f'status {status}')
    detail = f' (error_code {error_code}: {error_msg})' if error_code or error_msg else ''
    return f'nav_failed: Nav2 NavigateToPose finished {name}{detail}'


def result_reason(res: Any) -> str:
    """``nav_failure_reason`` of a GetResult response (``status`` and ``result``)."""
    return nav_failure_reason(res.status, getattr(res.result, 'error_code', 0),
                              getattr(res.result, 'error_msg', ''))


def nav_result_line(text: str, res: Any) -> tuple[str, str]:
    """(level, line) for Nav2's result of a topic query, which nobody waits for."""
    if res.status == STATUS_SUCCEEDED:
        return 'info', f'Nav2 reached the goal for {query_for_log(text)}'
    return 'warning', f'{query_for_log(text)}: {result_reason(res)}'


def wait_future(future: FutureLike, timeout: float | None,
                give_up: Callable[[], bool] | None = None, poll_s: float = 0.1) -> bool:
    """Wait for ``future`` from a thread that is not the executor's; False when ``timeout``
    seconds pass or ``give_up()`` turns true first."""
    event = threading.Event()
    future.add_done_callback(lambda _: event.set())
    deadline = None if timeout is None else time.monotonic() + timeout
    while not event.wait(poll_s):
        if deadline is not None and time.monotonic() > deadline:
            return False
        if give_up is not None and give_up():
            return False
    return True


def send_nav_goal(job: Job, outcome: SpatialOutcome, *, action_name: str,
                  server_timeout: float, wait_for_server: Callable[[float], bool],
                  send_goal: Callable[[DistanceSink], FutureLike],
                  active: Callable[[], bool], log: LogFn) -> None:
    """Send ``outcome.goal`` (already in ``send_goal``) to Nav2; failures go into ``outcome``.

    ``wait_for_server(timeout_s)`` and ``send_goal(on_distance)`` are the action client's;
    ``active()`` is false once the node is deactivating, which stops waiting for Nav2.
    Sets ``job.nav_status`` when Nav2's result is awaited.
    """
    job.feedback('navigating', 0.6)
    if not wait_for_server(server_timeout):
        outcome.fail(NAV_UNAVAILABLE, f"Nav2 action server '{action_name}' not available "
                     f'after {server_timeout:.1f} s')
        return
    sent = send_goal(lambda distance: job.feedback('navigating', 0.7, float(distance)))
    if not wait_future(sent, server_timeout):
        outcome.fail(NAV_UNAVAILABLE, f"Nav2 '{action_name}' did not answer the goal request "
                     f'within {server_timeout:.1f} s')
        return
    handle = sent.result()
    if not handle.accepted:
        where = [round(float(v), 3) for v in outcome.goal.position[:2]]
        outcome.fail(NAV_REJECTED, f"Nav2 '{action_name}' rejected the goal ({where} in "
                     f'{outcome.goal.frame_id})')
        return
    result_future = handle.get_result_async()
    if not job.wait_for_nav:
        result_future.add_done_callback(
            lambda f: log(*nav_result_line(job.request.text, f.result())))
        return
    if not wait_future(result_future, None, lambda: job.cancel.is_set() or not active()):
        handle.cancel_goal_async()
        outcome.fail(CANCELED, 'navigation canceled')
        return
    res = result_future.result()
    job.nav_status = int(res.status)
    if res.status != STATUS_SUCCEEDED:
        outcome.success = False
        outcome.code = NAV_FAILED
        outcome.reason = result_reason(res)
