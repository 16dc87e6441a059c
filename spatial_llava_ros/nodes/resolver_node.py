"""Resolver node (lifecycle): spatial queries in, SpatialResult + goal poses out, Nav2 goals.

Lifecycle (managed by bringup.launch.py, or ``ros2 lifecycle set``):
- configure: pick the model directory (``model_path``, or '' = the model shipped in the
  package, ``paths.model_dir(None)``; not a directory, or nothing shipped = FAILURE with the
  ModelLoadError message in the log), create publishers, subscriptions, tf listener, the
  action server and the Nav2 action client.
- activate: load the model (a load error = FAILURE, node stays inactive), wrap it in
  ``reliability.oom.OomFallbackResolver`` (CUDA out of memory: smaller batches, then the
  CPU, each step a logged warning), start the inference worker thread.
- deactivate: stop the worker (waiting queries are answered ``not_active``), free the
  model (and the CUDA cache).
- cleanup / shutdown: destroy everything configure created.

Threads: subscriptions and lifecycle services run on the default callback group; the
action server and the Nav2 client each have their own reentrant group; the model runs
only on the worker thread, fed by a bounded queue (``queries.queue.QueryQueue``: when full
the oldest waiting query is dropped and answered ``queue_full``). Queries are subscribed
KEEP_ALL so DDS drops none before that queue. So the executor never waits on inference,
and every query gets exactly one SpatialResult.
"""

from __future__ import annotations

import gc
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from geometry_msgs.msg import PoseStamped
from nav2_msgs.action import NavigateToPose
from rclpy.action import ActionClient, ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.duration import Duration
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.time import Time
from sensor_msgs.msg import Image
from tf2_ros import TransformException
from tf2_ros.buffer import Buffer
from tf2_ros.transform_listener import TransformListener

from spatial_llava_ros.action import ResolveSpatialQuery
from spatial_llava_ros.errors import ModelLoadError, SpatialLlavaError
from spatial_llava_ros.msg import MarkArray, SpatialQuery, SpatialResult
from spatial_llava_ros.nodes.conversions import (
    STATUS_SUCCEEDED,
    decode_color,
    fill_message,
    mark_from_msg,
    nav_failure_reason,
    pose_fields,
    query_for_log,
    result_fields,
    stamp_to_ns,
    transform_msg_to_matrix,
)
from spatial_llava_ros.nodes.params import RESOLVER_PARAMS
from spatial_llava_ros.nodes.ros_common import (
    GOAL_QOS,
    MARKED_QOS,
    declare_specs,
    param,
    spin,
)
from spatial_llava_ros.paths import model_dir
from spatial_llava_ros.pipeline import (
    MANIPULATE,
    NAVIGATE,
    FrameBuffer,
    FrameRecord,
    PipelineConfig,
    QueryRequest,
    SpatialOutcome,
    TransformUnavailableError,
    resolve_query,
)
from spatial_llava_ros.queries.queue import QueryQueue

# Failure codes added by the node (the pipeline's are in spatial_llava_ros.pipeline).
QUEUE_FULL = 'queue_full'
NOT_ACTIVE = 'not_active'
CANCELED = 'canceled'
NAV_UNAVAILABLE = 'nav_unavailable'
NAV_REJECTED = 'nav_rejected'
NAV_FAILED = 'nav_failed'
INTERNAL = 'internal_error'

# Queries in: KEEP_ALL + RELIABLE, so DDS never overwrites a query before ``_on_query`` has
# put it in the node's bounded queue (a full reader history holds back acks and slows the
# publisher instead). Dropping is then done in one place, the queue, and is answered
# ``queue_full``. A KEEP_LAST depth-50 reader lost 946 of a 1,000-query burst
# (test_flood_ros.py), unanswered.
QUERY_IN_QOS = QoSProfile(history=HistoryPolicy.KEEP_ALL, reliability=ReliabilityPolicy.RELIABLE,
                          durability=DurabilityPolicy.VOLATILE)
# Results out: a burst of queries gives a burst of (mostly queue_full) results; a deep
# KEEP_LAST writer history keeps them for slow readers without ever blocking the publisher
# (a KEEP_ALL writer would block, then fail, when a reader stops acknowledging).
RESULT_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1000,
                        reliability=ReliabilityPolicy.RELIABLE,
                        durability=DurabilityPolicy.VOLATILE)


@dataclass
class Job:
    """One query on its way through the worker."""

    request: QueryRequest
    navigate: bool  # send the goal to Nav2
    wait_for_nav: bool  # action goals wait for Nav2's result; topic queries do not
    goal_handle: object | None = None  # the ResolveSpatialQuery goal, if it came as one
    done: threading.Event = field(default_factory=threading.Event)
    cancel: threading.Event = field(default_factory=threading.Event)
    outcome: SpatialOutcome | None = None
    nav_status: int = 0
    now_ns: int = 0

    def feedback(self, stage: str, progress: float, distance: float = float('nan')) -> None:
        if self.goal_handle is None:
            return
        fb = ResolveSpatialQuery.Feedback()
        fb.stage, fb.progress, fb.distance_remaining = stage, float(progress), float(distance)
        self.goal_handle.publish_feedback(fb)


class ResolverNode(LifecycleNode):
    """Spatial-LLaVA resolver; see the module docstring."""

    def __init__(self, **kwargs) -> None:
        super().__init__('resolver_node', **kwargs)
        declare_specs(self, RESOLVER_PARAMS)
        self._resolver = None
        self._model_dir: Path | None = None
        self._remote = None  # model.remote.RemoteConfig when backend is remote
        self._fallbacks_logged = 0
        self._queue: QueryQueue[Job] | None = None
        self._frames: FrameBuffer | None = None
        self._config: PipelineConfig | None = None
        self._worker: threading.Thread | None = None
        self._active = threading.Event()
        self._entities: list = []

    # ---- lifecycle ------------------------------------------------------------------------

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        model_path = param(self, 'model_path')
        try:
            if param(self, 'backend') == 'remote':
                from spatial_llava_ros.model.remote import config_from_params

                self._remote = config_from_params(lambda name: param(self, name))
            else:
                self._remote = None
                self._model_dir = resolve_model_dir(model_path)
        except SpatialLlavaError as exc:
            self.get_logger().error(f'configure failed: {exc}')
            return TransitionCallbackReturn.FAILURE
        try:
            self._config = PipelineConfig(
                target_frame=param(self, 'target_frame'), base_frame=param(self, 'base_frame'),
                standoff=param(self, 'standoff'), max_frame_age=param(self, 'max_frame_age'))
        except SpatialLlavaError as exc:
            self.get_logger().error(f'configure failed: {exc}')
            return TransitionCallbackReturn.FAILURE
        self._frames = FrameBuffer(param(self, 'frames_kept'))
        self._queue = QueryQueue(param(self, 'query_queue_size'))
        self._queue.close()  # opened on activate

        # a plain publisher, not a lifecycle one: a query that arrives while the node is
        # inactive is still answered (`not_active`), so every query gets its one result
        self._result_pub = self.create_publisher(
            SpatialResult, param(self, 'result_topic'), RESULT_QOS)
        self._goal_pub = self.create_lifecycle_publisher(
            PoseStamped, param(self, 'goal_topic'), GOAL_QOS)
        self._target_pub = self.create_lifecycle_publisher(
            PoseStamped, param(self, 'target_pose_topic'), GOAL_QOS)
        self._query_sub = self.create_subscription(
            SpatialQuery, param(self, 'query_topic'), self._on_query, QUERY_IN_QOS)

        import message_filters

        self._image_sub = message_filters.Subscriber(
            self, Image, param(self, 'marked_image_topic'), qos_profile=MARKED_QOS)
        self._marks_sub = message_filters.Subscriber(
            self, MarkArray, param(self, 'marks_topic'), qos_profile=MARKED_QOS)
        self._frame_sync = message_filters.TimeSynchronizer(
            [self._image_sub, self._marks_sub], 4)
        self._frame_sync.registerCallback(self._on_marked_frame)

        self._tf_buffer = Buffer()
        self._tf_listener = TransformListener(self._tf_buffer, self)

        self._action_group = ReentrantCallbackGroup()
        self._action_server = ActionServer(
            self, ResolveSpatialQuery, param(self, 'action_name'),
            execute_callback=self._execute_goal, goal_callback=self._on_goal,
            cancel_callback=lambda _: CancelResponse.ACCEPT,
            callback_group=self._action_group)
        self._nav_client = ActionClient(self, NavigateToPose, param(self, 'nav_action'),
                                        callback_group=ReentrantCallbackGroup())
        where = (f'server {self._remote.base_url}' if self._remote is not None
                 else f'model {self._model_dir}')
        self.get_logger().info(f'configured: {where}, target frame '
                               f'{self._config.target_frame}, stand-off '
                               f'{self._config.standoff} m')
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        from transformers.utils import logging as hf_logging

        from spatial_llava_ros.model.resolver import Resolver
        from spatial_llava_ros.reliability.oom import OomFallbackResolver

        hf_logging.disable_progress_bar()  # no 'Loading weights' bar in the launch log
        started = time.monotonic()
        if self._remote is not None:
            from spatial_llava_ros.model.remote import RemoteResolver

            try:  # nothing is loaded: the server is probed by the first query
                self._resolver = RemoteResolver(
                    self._remote, abstain_threshold=param(self, 'abstain_threshold'),
                    on_log=self.get_logger().info)
            except (SpatialLlavaError, ImportError) as exc:
                self.get_logger().error(f'activate failed: {exc}')
                return TransitionCallbackReturn.FAILURE
            self.get_logger().info(self._resolver.describe())
            return self._start_worker(state)
        try:
            resolver = Resolver.from_pretrained(
                str(self._model_dir), abstain_threshold=param(self, 'abstain_threshold'),
                device=param(self, 'device') or None, dtype=param(self, 'dtype') or None)
        except (SpatialLlavaError, OSError) as exc:
            self.get_logger().error(f'activate failed: {exc}')
            return TransitionCallbackReturn.FAILURE
        # CUDA out of memory: smaller batches, then the CPU, each step logged (see
        # _log_fallbacks), instead of an internal_error for every query
        self._resolver = OomFallbackResolver(resolver)
        self._fallbacks_logged = 0
        self.get_logger().info(f'model loaded on {self._resolver.device} in '
                               f'{time.monotonic() - started:.1f} s')
        return self._start_worker(state)

    def _start_worker(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._queue.reopen()
        self._active.set()
        self._worker = threading.Thread(target=self._work, name='resolver_worker', daemon=True)
        self._worker.start()
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_worker()
        self._free_model()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._destroy_entities()
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_worker()
        self._free_model()
        self._destroy_entities()
        return super().on_shutdown(state)

    def close(self) -> None:
        """Called by main on exit, whatever the lifecycle state."""
        self._stop_worker()
        self._free_model()

    def _stop_worker(self) -> None:
        if self._queue is not None:
            for job in self._queue.close():
                self._finish(job, self._failed(job, NOT_ACTIVE, 'the resolver was deactivated '
                                               'before this query ran'))
        self._active.clear()
        if self._worker is not None:
            self._worker.join(timeout=30.0)
            self._worker = None

    def _free_model(self) -> None:
        if self._resolver is None:
            return
        cuda = getattr(self._resolver.device, 'type', '') == 'cuda'
        close = getattr(self._resolver, 'close', None)  # the remote backend's HTTP client
        if close is not None:
            close()
        self._resolver = None
        gc.collect()
        if cuda:
            import torch

            torch.cuda.empty_cache()

    def _destroy_entities(self) -> None:
        if getattr(self, '_action_server', None) is not None:
            self._action_server.destroy()
            self._action_server = None
        if getattr(self, '_nav_client', None) is not None:
            self._nav_client.destroy()
            self._nav_client = None
        for name in ('_query_sub',):
            sub = getattr(self, name, None)
            if sub is not None:
                self.destroy_subscription(sub)
                setattr(self, name, None)
        for name in ('_image_sub', '_marks_sub'):
            mf_sub = getattr(self, name, None)
            if mf_sub is not None:
                self.destroy_subscription(mf_sub.sub)
                setattr(self, name, None)
        if getattr(self, '_result_pub', None) is not None:
            self.destroy_publisher(self._result_pub)
            self._result_pub = None
        for name in ('_goal_pub', '_target_pub'):
            pub = getattr(self, name, None)
            if pub is not None:
                self.destroy_lifecycle_publisher(pub)
                setattr(self, name, None)
        listener = getattr(self, '_tf_listener', None)
        if listener is not None and hasattr(listener, 'unregister'):
            listener.unregister()
        self._tf_listener = None
        if self._frames is not None:
            self._frames.clear()

    # ---- inputs (executor threads; cheap) ---------------------------------------------------

    def _on_marked_frame(self, image: Image, marks: MarkArray) -> None:
        if not self._active.is_set():
            return
        stamp_ns = stamp_to_ns(marks.header.stamp.sec, marks.header.stamp.nanosec)
        try:
            record = FrameRecord(stamp_ns, marks.header.frame_id, decode_color(image),
                                 [mark_from_msg(m, marks.width, marks.height)
                                  for m in marks.marks])
        except SpatialLlavaError as exc:
            self.get_logger().warning(f'marked frame ignored: {exc}', throttle_duration_sec=5.0)
            return
        self._frames.add(record)

    def _on_query(self, msg: SpatialQuery) -> None:
        request = QueryRequest(msg.text, int(msg.action), msg.target_frame,
                               stamp_to_ns(msg.header.stamp.sec, msg.header.stamp.nanosec))
        navigate = bool(param(self, 'navigate')) and request.action == NAVIGATE
        job = Job(request, navigate=navigate, wait_for_nav=False)
        if not self._active.is_set():
            self._finish(job, self._failed(job, NOT_ACTIVE, 'the resolver is not active '
                                           '(ros2 lifecycle set <node> activate)'))
            return
        self._enqueue(job)

    def _enqueue(self, job: Job) -> None:
        dropped = self._queue.put(job)
        if dropped is job:
            self._finish(job, self._failed(job, NOT_ACTIVE, 'the resolver is not active'))
        elif dropped is not None:
            self._finish(dropped, self._failed(
                dropped, QUEUE_FULL, f'{self._queue.maxsize} queries were waiting for the '
                'model; this one, the oldest, was dropped'))

    def _on_goal(self, goal_request) -> GoalResponse:
        if not self._active.is_set():
            self.get_logger().warning('ResolveSpatialQuery goal rejected: resolver not active')
            return GoalResponse.REJECT
        return GoalResponse.ACCEPT

    def _execute_goal(self, goal_handle):
        goal = goal_handle.request
        request = QueryRequest(goal.text, int(goal.action), goal.target_frame,
                               self.get_clock().now().nanoseconds)
        navigate = bool(goal.navigate) and request.action == NAVIGATE
        job = Job(request, navigate=navigate, wait_for_nav=True, goal_handle=goal_handle)
        job.feedback('waiting_for_frame', 0.0)
        self._enqueue(job)
        while not job.done.wait(0.1):
            if goal_handle.is_cancel_requested:
                job.cancel.set()
        result = ResolveSpatialQuery.Result()
        fill_message(result.result, result_fields(job.outcome, job.now_ns))
        result.nav_status = int(job.nav_status)
        if job.outcome.code == CANCELED and goal_handle.is_cancel_requested:
            goal_handle.canceled()
        elif job.outcome.success:
            goal_handle.succeed()
        else:
            goal_handle.abort()
        return result

    # ---- worker thread ----------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            job = self._queue.get(timeout=0.5)
            if job is None:
                if self._queue.closed:
                    return
                continue
            try:
                outcome = self._answer(job)
            except Exception as exc:  # noqa: BLE001 - reported in the result, worker lives on
                self.get_logger().error(f'query {query_for_log(job.request.text)} crashed: '
                                        f'{type(exc).__name__}: {exc}')
                outcome = self._failed(job, INTERNAL, f'{type(exc).__name__}: {exc}')
            self._finish(job, outcome)

    def _answer(self, job: Job) -> SpatialOutcome:
        if job.cancel.is_set():
            return self._failed(job, CANCELED, 'canceled before it ran')
        job.feedback('resolving', 0.2)
        resolver = self._resolver
        if resolver is None:
            return self._failed(job, NOT_ACTIVE, 'no model loaded')
        now_ns = self.get_clock().now().nanoseconds
        try:
            outcome = resolve_query(job.request, self._frames.latest(), resolver,
                                    self._lookup, self._config, now_ns)
        finally:
            self._log_fallbacks(resolver)
        job.feedback('locating', 0.5)
        if not outcome.success:
            return outcome
        goal_msg = fill_message(PoseStamped(), pose_fields(
            outcome.goal.position, outcome.goal.orientation, outcome.goal.frame_id,
            outcome.frame_stamp_ns))
        if job.request.action == MANIPULATE:
            self._target_pub.publish(goal_msg)
        else:
            self._goal_pub.publish(goal_msg)
        if job.navigate:
            self._navigate(job, outcome, goal_msg)
        return outcome

    def _log_fallbacks(self, resolver) -> None:
        """Put the OOM fallbacks taken since the last query into the node's log."""
        events = getattr(resolver, 'events', [])
        for line in events[self._fallbacks_logged:]:
            self.get_logger().warning(f'CUDA OOM fallback: {line}')
        self._fallbacks_logged = len(events)

    def _lookup(self, target: str, source: str, stamp_ns: int):
        timeout = param(self, 'tf_timeout')
        try:
            tf = self._tf_buffer.lookup_transform(target, source, Time(nanoseconds=stamp_ns),
                                                  timeout=Duration(seconds=timeout))
        except TransformException as exc:
            raise TransformUnavailableError(
                f"tf '{source}' -> '{target}' at t = {stamp_ns * 1e-9:.3f} s not available "
                f'within {timeout:.2f} s: {exc}') from None
        return transform_msg_to_matrix(tf.transform)

    def _wait(self, future, timeout: float | None, job: Job | None = None) -> bool:
        """Wait for an rclpy future from this (non-executor) thread."""
        event = threading.Event()
        future.add_done_callback(lambda _: event.set())
        deadline = None if timeout is None else time.monotonic() + timeout
        while not event.wait(0.1):
            if deadline is not None and time.monotonic() > deadline:
                return False
            if job is not None and (job.cancel.is_set() or not self._active.is_set()):
                return False
        return True

    def _navigate(self, job: Job, outcome: SpatialOutcome, goal_msg: PoseStamped) -> None:
        name = param(self, 'nav_action')
        wait_s = param(self, 'nav_server_timeout')
        job.feedback('navigating', 0.6)
        if not self._nav_client.wait_for_server(timeout_sec=wait_s):
            outcome.fail(NAV_UNAVAILABLE, f"Nav2 action server '{name}' not available after "
                         f'{wait_s:.1f} s')
            return
        goal = NavigateToPose.Goal()
        goal.pose = goal_msg

        def relay(feedback_msg) -> None:
            job.feedback('navigating', 0.7, float(feedback_msg.feedback.distance_remaining))

        sent = self._nav_client.send_goal_async(goal, feedback_callback=relay)
        if not self._wait(sent, wait_s):
            outcome.fail(NAV_UNAVAILABLE, f"Nav2 '{name}' did not answer the goal request "
                         f'within {wait_s:.1f} s')
            return
        handle = sent.result()
        if not handle.accepted:
            outcome.fail(NAV_REJECTED, f"Nav2 '{name}' rejected the goal "
                         f'({list(outcome.goal.position[:2].round(3))} in '
                         f'{outcome.goal.frame_id})')
            return
        result_future = handle.get_result_async()
        if not job.wait_for_nav:
            result_future.add_done_callback(lambda f: self._log_nav_result(job, f))
            return
        if not self._wait(result_future, None, job):
            handle.cancel_goal_async()
            outcome.fail(CANCELED, 'navigation canceled')
            return
        res = result_future.result()
        job.nav_status = int(res.status)
        if res.status != STATUS_SUCCEEDED:
            outcome.success = False
            outcome.code = NAV_FAILED
            outcome.reason = nav_failure_reason(res.status, getattr(res.result, 'error_code', 0),
                                                getattr(res.result, 'error_msg', ''))

    def _log_nav_result(self, job: Job, future) -> None:
        res = future.result()
        if res.status == STATUS_SUCCEEDED:
            self.get_logger().info(f'Nav2 reached the goal for {query_for_log(job.request.text)}')
        else:
            self.get_logger().warning(f'{query_for_log(job.request.text)}: ' + nav_failure_reason(
                res.status, getattr(res.result, 'error_code', 0),
                getattr(res.result, 'error_msg', '')))

    # ---- answers ------------------------------------------------------------------------------

    def _failed(self, job: Job, code: str, detail: str) -> SpatialOutcome:
        target = job.request.target_frame or (self._config.target_frame if self._config
                                              else '')
        return SpatialOutcome(job.request.text, job.request.action, False,
                              target_frame=target).fail(code, detail)

    def _finish(self, job: Job, outcome: SpatialOutcome) -> None:
        job.now_ns = self.get_clock().now().nanoseconds
        job.outcome = outcome
        msg = fill_message(SpatialResult(), result_fields(outcome, job.now_ns))
        pub = getattr(self, '_result_pub', None)
        if pub is not None:
            pub.publish(msg)
        if outcome.success:
            self.get_logger().info(f'{query_for_log(outcome.query)} -> mark {outcome.mark_id} '
                                   f'(p={outcome.confidence:.2f})')
        else:
            self.get_logger().warning(f'{query_for_log(outcome.query)}: {outcome.reason}')
        job.done.set()


def resolve_model_dir(model_path: str) -> Path:
    """The checkpoint to load: ``model_path``, or the model shipped in the package when ''.

    Raises ModelLoadError (a configure FAILURE) when ``model_path`` is not a directory, or is
    '' and the package ships no model.
    """
    if not model_path:
        return model_dir(None)
    path = Path(model_path).expanduser()
    if not path.is_dir():
        raise ModelLoadError(f'model_path {model_path!r} is not a directory')
    return path


def main(args=None) -> int:
    return spin(ResolverNode, num_threads=4, args=args)


if __name__ == '__main__':
    raise SystemExit(main())
