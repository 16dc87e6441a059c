"""Answering one job on the worker: the newest frame, the model, the goal, Nav2.

``JobAnswerer.answer`` is what the resolver node's worker runs for each job, in order:
a job canceled while waiting is ``canceled``; no model is ``not_active``;
``pipeline.resolve_query`` on the newest frame (its failures are returned as they are);
the goal pose goes out on ``target_pose`` (MANIPULATE) or ``goal_pose`` (otherwise); then,
when the job asks for it, to Nav2. Action feedback is given at each step. Publishing and
Nav2 are the node's, handed in as callables, so this runs without ROS.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from spatial_llava_ros.pipeline import (
    MANIPULATE,
    FrameBuffer,
    PipelineConfig,
    ScoresMarks,
    SpatialOutcome,
    TransformLookup,
    resolve_query,
)
from spatial_llava_ros.queries.jobs import CANCELED, NOT_ACTIVE, Job, failed_outcome
from spatial_llava_ros.queries.log_lines import LogFn, fallback_lines

# where a successful answer's goal pose is published (node parameters goal_topic and
# target_pose_topic name the topics)
GOAL_POSE, TARGET_POSE = 'goal_pose', 'target_pose'


def goal_stream(action: int) -> str:
    """``target_pose`` for a MANIPULATE query (a manipulator's target), else ``goal_pose``."""
    return TARGET_POSE if action == MANIPULATE else GOAL_POSE


class JobAnswerer:
    """Answers jobs on the newest kept frame; see the module docstring.

    ``publish_goal(stream, outcome)`` publishes ``outcome.goal`` on ``stream`` (GOAL_POSE or
    TARGET_POSE) and returns the message it sent; ``navigate(job, outcome, message)`` hands
    that message to Nav2 and writes Nav2's failures into ``outcome``.
    """

    def __init__(self, config: PipelineConfig, frames: FrameBuffer, lookup: TransformLookup,
                 clock_ns: Callable[[], int], log: LogFn,
                 publish_goal: Callable[[str, SpatialOutcome], Any],
                 navigate: Callable[[Job, SpatialOutcome, Any], None]) -> None:
        self.config = config
        self.frames = frames
        self.lookup = lookup
        self.clock_ns = clock_ns
        self.log = log
        self.publish_goal = publish_goal
        self.navigate = navigate
        self.fallbacks_logged = 0

    def new_model(self) -> None:
        """A model was (re)loaded: its OOM fallback events start from none."""
        self.fallbacks_logged = 0

    def answer(self, job: Job, resolver: ScoresMarks | None) -> SpatialOutcome:
        if job.cancel.is_set():
            return self._failed(job, CANCELED, 'canceled before it ran')
        job.feedback('resolving', 0.2)
        if resolver is None:
            return self._failed(job, NOT_ACTIVE, 'no model loaded')
        now_ns = self.clock_ns()
        try:
            outcome = resolve_query(job.request, self.frames.latest(), resolver, self.lookup,
                                    self.config, now_ns)
        finally:
            self._log_fallbacks(resolver)
        job.feedback('locating', 0.5)
        if not outcome.success:
            return outcome
        sent = self.publish_goal(goal_stream(job.request.action), outcome)
        if job.navigate:
            self.navigate(job, outcome, sent)
        return outcome

    def _log_fallbacks(self, resolver: Any) -> None:
        """Put the OOM fallbacks taken since the last query into the log (OomFallbackResolver
        keeps them in ``events``; other resolvers have none)."""
        events = getattr(resolver, 'events', [])
        for line in fallback_lines(events, self.fallbacks_logged):
            self.log('warning', line)
        self.fallbacks_logged = len(events)

    def _failed(self, job: Job, code: str, detail: str) -> SpatialOutcome:
        return failed_outcome(job.request, code, detail, self.config.target_frame)
