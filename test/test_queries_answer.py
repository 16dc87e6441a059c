"""Answering a job on the worker (queries.answer.JobAnswerer) with the real tiny model, a
real marked frame and a real transform table, no ROS: the goal goes to ``goal_pose`` or
``target_pose`` by the query's action, then to Nav2 when the job asks; action feedback
comes in order; canceled, model-less and frame-less jobs fail with their codes; the OOM
fallbacks are logged once each. Publishing and Nav2 are the node's, so here they are
lists that record what the node would have sent (test_nodes_nav2.py sends it for real).
"""

# ruff: noqa: F811 - pytest fixtures imported from test_property_pipeline are arguments
from __future__ import annotations

import threading

import pytest
from test_property_pipeline import resolver, scene  # noqa: F401 - shared fixtures

from spatial_llava_ros.pipeline import (
    LOCATE,
    MANIPULATE,
    NAVIGATE,
    NO_FRAME,
    FrameBuffer,
    PipelineConfig,
    QueryRequest,
)
from spatial_llava_ros.queries.answer import GOAL_POSE, TARGET_POSE, JobAnswerer, goal_stream
from spatial_llava_ros.queries.jobs import CANCELED, NOT_ACTIVE, JobRunner, goal_job, topic_job
from spatial_llava_ros.reliability.oom import OomFallbackResolver

CONFIG = PipelineConfig(base_frame='', max_frame_age=0.0)


class Node:
    """What the node hands the answerer: its publishers and Nav2, as recorders."""

    def __init__(self, scene, with_frame: bool = True) -> None:
        _, _, record, tf = scene
        self.frames = FrameBuffer(3)
        if with_frame:
            self.frames.add(record)
        self.published: list[tuple[str, object]] = []
        self.navigated: list[tuple[object, object, object]] = []
        self.lines: list[tuple[str, str]] = []
        self.answerer = JobAnswerer(CONFIG, self.frames, tf.lookup, lambda: record.stamp_ns,
                                    lambda level, line: self.lines.append((level, line)),
                                    publish_goal=self.publish, navigate=self.navigate)

    def publish(self, stream, outcome):
        message = {'stream': stream, 'position': outcome.goal.position.copy()}
        self.published.append((stream, outcome))
        return message

    def navigate(self, job, outcome, message):
        self.navigated.append((job, outcome, message))


def test_goal_stream_by_action():
    assert goal_stream(MANIPULATE) == TARGET_POSE
    assert goal_stream(NAVIGATE) == GOAL_POSE and goal_stream(LOCATE) == GOAL_POSE


@pytest.mark.parametrize('action,stream', [(NAVIGATE, GOAL_POSE), (MANIPULATE, TARGET_POSE),
                                           (LOCATE, GOAL_POSE)])
def test_an_answer_publishes_its_goal_on_the_actions_stream(resolver, scene, action, stream):
    node = Node(scene)
    feedback = []
    job = goal_job(QueryRequest('the chair', action), navigate=False, on_feedback=feedback.append)
    out = node.answerer.answer(job, resolver)
    assert out.success, out.reason
    assert [s for s, _ in node.published] == [stream] and node.published[0][1] is out
    assert out.goal is not None and out.goal.frame_id == 'map'
    assert [(f['stage'], f['progress']) for f in feedback] == [('resolving', 0.2),
                                                              ('locating', 0.5)]
    assert node.navigated == []


def test_a_navigate_job_hands_the_published_goal_to_nav2(resolver, scene):
    node = Node(scene)
    job = topic_job(QueryRequest('the chair', NAVIGATE), navigate=True)
    out = node.answerer.answer(job, resolver)
    assert out.success, out.reason
    ((nav_job, nav_out, message),) = node.navigated
    assert nav_job is job and nav_out is out and message['stream'] == GOAL_POSE
    assert (message['position'] == out.goal.position).all()


def test_canceled_modelless_and_frameless_jobs_fail_without_a_goal(resolver, scene):
    node = Node(scene)
    canceled = goal_job(QueryRequest('the chair', NAVIGATE), True, None)
    canceled.cancel.set()
    out = node.answerer.answer(canceled, resolver)
    assert out.code == CANCELED and out.reason == 'canceled: canceled before it ran'
    out = node.answerer.answer(topic_job(QueryRequest('the chair', NAVIGATE), True), None)
    assert out.code == NOT_ACTIVE and out.reason == 'not_active: no model loaded'
    assert out.target_frame == 'map'
    empty = Node(scene, with_frame=False)
    out = empty.answerer.answer(topic_job(QueryRequest('the chair', NAVIGATE), True), resolver)
    assert out.code == NO_FRAME
    assert node.published == [] and empty.published == [] and empty.navigated == []


def test_oom_fallbacks_are_logged_once_each(resolver, scene):
    node = Node(scene)
    wrapper = OomFallbackResolver(resolver)
    job = topic_job(QueryRequest('the chair', NAVIGATE), False)
    wrapper.events.append('out of memory scoring 1 query on 6 marks on cuda:0; emptying the '
                          'CUDA cache and retrying once')  # as _warn records it
    assert node.answerer.answer(job, wrapper).success
    assert node.answerer.answer(job, wrapper).success
    warned = [line for level, line in node.lines if level == 'warning']
    assert warned == ['CUDA OOM fallback: out of memory scoring 1 query on 6 marks on cuda:0; '
                      'emptying the CUDA cache and retrying once']
    node.answerer.new_model()  # a new model's events start from none
    fresh = OomFallbackResolver(resolver)
    fresh.events.append('split')
    node.answerer.answer(job, fresh)
    assert node.lines[-1] == ('warning', 'CUDA OOM fallback: split')


def test_runner_and_answerer_together_answer_every_query_once(resolver, scene):
    """The node's worker path without ROS: JobRunner feeding JobAnswerer."""
    node = Node(scene)
    finished, lock = [], threading.Lock()

    def on_finished(job):
        with lock:
            finished.append(job)

    runner = JobRunner(2, answer=lambda job: node.answerer.answer(job, resolver),
                       on_finished=on_finished, clock_ns=lambda: 7, log=lambda *a: None,
                       default_frame='map')
    runner.start()
    try:
        jobs = [topic_job(QueryRequest(f'the chair {i}', NAVIGATE), False) for i in range(3)]
        for job in jobs:
            runner.submit(job, check_active=True)
        for job in jobs:
            assert job.done.wait(120.0), job.request.text
    finally:
        runner.stop()
    assert sorted(id(j) for j in finished) == sorted(id(j) for j in jobs)
    answered = [j for j in jobs if j.outcome.success]
    assert answered and all(j.outcome.code in ('', 'queue_full') for j in jobs)
    assert len(node.published) == len(answered)
