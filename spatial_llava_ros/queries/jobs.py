"""The resolver node's jobs: one query each, a bounded queue, one worker, one answer each.

Queries come from the executor (the ``spatial_query`` topic, ``ResolveSpatialQuery`` goals)
and are answered one at a time on a worker thread, so the executor never waits on the
model. ``JobRunner`` owns that queue and thread and finishes every job exactly once: with
the worker's answer, ``queue_full`` when it is dropped as the oldest waiting,
``not_active`` when the runner stops before it ran (or is not running), or
``internal_error`` when answering raised. What "answer" and "finished" mean (the model,
publishing the result) is handed in by the node, so all of this runs without ROS.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from spatial_llava_ros.pipeline import NAVIGATE, QueryRequest, SpatialOutcome
from spatial_llava_ros.queries.log_lines import LogFn, crash_line, outcome_line
from spatial_llava_ros.queries.queue import QueryQueue

# Failure codes added by the node (the pipeline's are in spatial_llava_ros.pipeline).
QUEUE_FULL = 'queue_full'
NOT_ACTIVE = 'not_active'
CANCELED = 'canceled'
NAV_UNAVAILABLE = 'nav_unavailable'
NAV_REJECTED = 'nav_rejected'
NAV_FAILED = 'nav_failed'
INTERNAL = 'internal_error'
NODE_FAILURE_CODES = (QUEUE_FULL, NOT_ACTIVE, CANCELED, NAV_UNAVAILABLE, NAV_REJECTED,
                      NAV_FAILED, INTERNAL)

# What a goal handle is told when its job is finished (ResolveSpatialQuery's terminal states).
GOAL_CANCELED, GOAL_SUCCEEDED, GOAL_ABORTED = 'canceled', 'succeeded', 'aborted'

# ResolveSpatialQuery.Feedback fields -> the action's feedback publisher
FeedbackSink = Callable[[dict], None]


def feedback_fields(stage: str, progress: float, distance: float = float('nan')) -> dict:
    """ResolveSpatialQuery.Feedback fields: stage name, progress 0..1, Nav2's distance left."""
    return {'stage': stage, 'progress': float(progress), 'distance_remaining': float(distance)}


@dataclass
class Job:
    """One query on its way through the worker."""

    request: QueryRequest
    navigate: bool  # send the goal to Nav2
    wait_for_nav: bool  # action goals wait for Nav2's result; topic queries do not
    on_feedback: FeedbackSink | None = None  # set when it came as a ResolveSpatialQuery goal
    done: threading.Event = field(default_factory=threading.Event)
    cancel: threading.Event = field(default_factory=threading.Event)
    outcome: SpatialOutcome | None = None
    nav_status: int = 0  # action_msgs/GoalStatus of the Nav2 goal, when one was awaited
    now_ns: int = 0  # when it was finished (the result's header stamp)

    def feedback(self, stage: str, progress: float, distance: float = math.nan) -> None:
        if self.on_feedback is not None:
            self.on_feedback(feedback_fields(stage, progress, distance))


def topic_job(request: QueryRequest, navigate: bool) -> Job:
    """A ``spatial_query`` message: Nav2 only when the ``navigate`` parameter is on and the
    query asks to NAVIGATE; its Nav2 result is logged, not awaited."""
    return Job(request, navigate=bool(navigate) and request.action == NAVIGATE,
               wait_for_nav=False)


def goal_job(request: QueryRequest, navigate: bool, on_feedback: FeedbackSink | None) -> Job:
    """A ResolveSpatialQuery goal: Nav2 when the goal says ``navigate`` and asks to NAVIGATE;
    its result waits for Nav2's."""
    return Job(request, navigate=bool(navigate) and request.action == NAVIGATE,
               wait_for_nav=True, on_feedback=on_feedback)


def failed_outcome(request: QueryRequest, code: str, detail: str,
                   default_frame: str = '') -> SpatialOutcome:
    """A failed answer to ``request``: ``reason`` = '<code>: <detail>'."""
    return SpatialOutcome(request.text, request.action, False,
                          target_frame=request.target_frame or default_frame).fail(code, detail)


def goal_verdict(outcome: SpatialOutcome, cancel_requested: bool) -> str:
    """How the action goal ends: canceled (asked for and done), succeeded, or aborted."""
    if outcome.code == CANCELED and cancel_requested:
        return GOAL_CANCELED
    return GOAL_SUCCEEDED if outcome.success else GOAL_ABORTED


NOT_ACTIVE_HINT = 'the resolver is not active (ros2 lifecycle set <node> activate)'


class JobRunner:
    """A bounded queue and one worker thread; every job is finished exactly once.

    ``answer(job)`` runs on the worker and returns the outcome; ``on_finished(job)`` is
    called with ``job.outcome`` and ``job.now_ns`` set (the node publishes the result
    there), then the outcome is logged and ``job.done`` is set. Created stopped.
    """

    def __init__(self, queue_size: int, answer: Callable[[Job], SpatialOutcome],
                 on_finished: Callable[[Job], None], clock_ns: Callable[[], int],
                 log: LogFn, default_frame: str = '', thread_name: str = 'resolver_worker',
                 ) -> None:
        self.queue: QueryQueue[Job] = QueryQueue(queue_size)
        self.queue.close()  # opened by start()
        self.answer = answer
        self.on_finished = on_finished
        self.clock_ns = clock_ns
        self.log = log
        self.default_frame = default_frame
        self.thread_name = thread_name
        self.last_error: BaseException | None = None  # what on_finished or log last raised
        self._active = threading.Event()
        self._worker: threading.Thread | None = None

    @property
    def active(self) -> bool:
        """Started and not stopped: jobs are taken."""
        return self._active.is_set()

    def start(self) -> None:
        self.queue.reopen()
        self._active.set()
        self._worker = threading.Thread(target=self._work, name=self.thread_name, daemon=True)
        self._worker.start()

    def stop(self, join_timeout: float = 30.0) -> None:
        """Take no more jobs, answer the waiting ones ``not_active``, join the worker."""
        for job in self.queue.close():
            self.finish(job, self.failed(job, NOT_ACTIVE, 'the resolver was deactivated '
                                         'before this query ran'))
        self._active.clear()
        if self._worker is not None:
            self._worker.join(timeout=join_timeout)
            self._worker = None

    def submit(self, job: Job, check_active: bool = False) -> None:
        """Queue ``job``; a dropped (oldest waiting) job is answered ``queue_full`` at once.

        ``check_active``: a job that arrives while the runner is stopped is answered
        ``not_active`` with the hint to activate the node (topic queries; action goals are
        rejected before they get here).
        """
        if check_active and not self.active:
            self.finish(job, self.failed(job, NOT_ACTIVE, NOT_ACTIVE_HINT))
            return
        dropped = self.queue.put(job)
        if dropped is job:
            self.finish(job, self.failed(job, NOT_ACTIVE, 'the resolver is not active'))
        elif dropped is not None:
            self.finish(dropped, self.failed(
                dropped, QUEUE_FULL, f'{self.queue.maxsize} queries were waiting for the '
                'model; this one, the oldest, was dropped'))

    def run_goal(self, job: Job, cancel_requested: Callable[[], bool],
                 poll_s: float = 0.1) -> Job:
        """Submit an action goal's job and wait until it is finished (on the goal's own
        executor thread), passing a cancel request on to the job."""
        job.feedback('waiting_for_frame', 0.0)
        self.submit(job)
        while not job.done.wait(poll_s):
            if cancel_requested():
                job.cancel.set()
        return job

    def failed(self, job: Job, code: str, detail: str) -> SpatialOutcome:
        return failed_outcome(job.request, code, detail, self.default_frame)

    def finish(self, job: Job, outcome: SpatialOutcome) -> None:
        """Record ``outcome``, hand the job to ``on_finished``, log it, set ``job.done``.

        ``job.done`` is set even when publishing or logging raises, so an action goal
        waiting on it still returns; the error then propagates to the caller.
        """
        job.now_ns = self.clock_ns()
        job.outcome = outcome
        try:
            self.on_finished(job)
            self.log(*outcome_line(outcome))
        finally:
            job.done.set()

    def _work(self) -> None:
        for job in self.queue.jobs():
            try:
                outcome = self.answer(job)
            except Exception as exc:  # noqa: BLE001 - reported in the result, worker lives on
                self.log('error', crash_line(job.request.text, exc))
                outcome = self.failed(job, INTERNAL, f'{type(exc).__name__}: {exc}')
            try:
                self.finish(job, outcome)
            except Exception as exc:  # noqa: BLE001 - a failed publish must not stop the worker
                self.last_error = exc
