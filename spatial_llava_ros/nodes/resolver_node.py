"""Resolver node (lifecycle): spatial queries in, SpatialResult + goal poses out, Nav2 goals.

The ROS wiring only: parameters, publishers, subscriptions, tf, the action server, the
Nav2 action client and the lifecycle. What happens to a query is in the ROS-free
``spatial_llava_ros.queries`` package: the jobs, their queue and worker
(``queries.jobs.JobRunner``), answering a job (``queries.answer.JobAnswerer``), the Nav2
exchange (``queries.nav2.send_nav_goal``) and the log lines (``queries.log_lines``).

Lifecycle (``autostart``, which bringup.launch.py sets: configure then activate as soon as
the node spins; else ``ros2 lifecycle set``):
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
from pathlib import Path

from geometry_msgs.msg import PoseStamped
from nav2_msgs.action import NavigateToPose
from rclpy.action import ActionClient, ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.duration import Duration
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.time import Time
from sensor_msgs.msg import Image
from tf2_ros import TransformException
from tf2_ros.buffer import Buffer
from tf2_ros.transform_listener import TransformListener

from spatial_llava_ros.action import ResolveSpatialQuery
from spatial_llava_ros.errors import SpatialLlavaError
from spatial_llava_ros.msg import MarkArray, SpatialQuery, SpatialResult
from spatial_llava_ros.nodes.conversions import (
    decode_color,
    fill_message,
    mark_from_msg,
    ns_to_stamp,
    pose_fields,
    result_fields,
    rgb_image_fields,
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
from spatial_llava_ros.paths import resolve_model_dir
from spatial_llava_ros.pipeline import (
    FrameBuffer,
    FrameRecord,
    PipelineConfig,
    QueryRequest,
    SpatialOutcome,
    TransformUnavailableError,
)
from spatial_llava_ros.queries.answer import TARGET_POSE, JobAnswerer
from spatial_llava_ros.queries.answer_image import answer_image, answered_frame
from spatial_llava_ros.queries.jobs import (
    GOAL_ABORTED,
    GOAL_CANCELED,
    Job,
    JobRunner,
    goal_job,
    goal_verdict,
    topic_job,
)
from spatial_llava_ros.queries.nav2 import DistanceSink, send_nav_goal

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


class ResolverNode(LifecycleNode):
    """Spatial-LLaVA resolver; see the module docstring."""

    def __init__(self, **kwargs) -> None:
        super().__init__('resolver_node', **kwargs)
        declare_specs(self, RESOLVER_PARAMS)
        self._resolver = None
        self._model_dir: Path | None = None
        self._remote = None  # model.remote.RemoteConfig when backend is remote
        self._frames: FrameBuffer | None = None
        self._config: PipelineConfig | None = None
        self._jobs: JobRunner | None = None  # queue + worker, made on configure
        self._answerer: JobAnswerer | None = None
        # autostart: the node drives itself to active once it spins, instead of launch_ros'
        # ChangeState events, whose service wait raises InvalidHandle ("cannot use
        # Destroyable because destruction was requested") when Ctrl-C comes first. A steady
        # clock, so that it fires under use_sim_time before any /clock.
        self._autostart_timer = None
        self._transition_lock = threading.Lock()
        if param(self, 'autostart'):
            self._autostart_timer = self.create_timer(
                0.0, self._autostart, clock=Clock(clock_type=ClockType.STEADY_TIME))

    # ---- lifecycle ------------------------------------------------------------------------

    def _autostart(self) -> None:
        self.destroy_timer(self._autostart_timer)
        self._autostart_timer = None
        try:
            if self.trigger_configure() == TransitionCallbackReturn.SUCCESS:
                self.trigger_activate()
        except _rclpy.RCLError:  # Ctrl-C during the transition: its transition event has nowhere
            if self.context.ok():  # to go; main() is shutting the node down
                raise

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
        self._jobs = JobRunner(param(self, 'query_queue_size'), answer=self._answer,
                               on_finished=self._publish_result, clock_ns=self._now_ns,
                               log=self._log, default_frame=self._config.target_frame)
        self._answerer = JobAnswerer(self._config, self._frames, self._lookup, self._now_ns,
                                     self._log, publish_goal=self._publish_goal,
                                     navigate=self._navigate)

        # a plain publisher, not a lifecycle one: a query that arrives while the node is
        # inactive is still answered (`not_active`), so every query gets its one result
        self._result_pub = self.create_publisher(
            SpatialResult, param(self, 'result_topic'), RESULT_QOS)
        self._answer_image_pub = (self.create_publisher(
            Image, param(self, 'answer_image_topic'), RESULT_QOS)
            if param(self, 'answer_image_topic') else None)
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
        with self._transition_lock:  # close() waits for a model load in progress
            return self._activate(state)

    def _activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        if not self.context.ok():  # Ctrl-C came first: do not start a load nobody waits for
            return TransitionCallbackReturn.FAILURE
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
        # CUDA out of memory: smaller batches, then the CPU, each step logged (by the
        # JobAnswerer), instead of an internal_error for every query
        self._resolver = OomFallbackResolver(resolver)
        self._answerer.new_model()
        if self.context.ok():  # after Ctrl-C there is no /rosout to log to
            self.get_logger().info(f'model loaded on {self._resolver.device} in '
                                   f'{time.monotonic() - started:.1f} s')
        return self._start_worker(state)

    def _start_worker(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._jobs.start()
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

    def close(self, wait_s: float = 5.0) -> bool:
        """Called by main on exit, whatever the lifecycle state. An activate that is still
        loading the model (Ctrl-C came during it) is waited for up to ``wait_s``; False when
        it is still loading then (main then leaves without waiting for it, see
        ``ros_common.spin``)."""
        waited = self._transition_lock.acquire(timeout=wait_s)
        try:
            self._stop_worker()
            self._free_model()
        finally:
            if waited:
                self._transition_lock.release()
        return waited

    def _stop_worker(self) -> None:
        if self._jobs is not None:
            self._jobs.stop()

    def _active(self) -> bool:
        return self._jobs is not None and self._jobs.active

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
        for name in ('_result_pub', '_answer_image_pub'):
            pub = getattr(self, name, None)
            if pub is not None:
                self.destroy_publisher(pub)
                setattr(self, name, None)
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
        if not self._active():
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
        self._jobs.submit(topic_job(request, param(self, 'navigate')), check_active=True)

    def _on_goal(self, goal_request) -> GoalResponse:
        if not self._active():
            self.get_logger().warning('ResolveSpatialQuery goal rejected: resolver not active')
            return GoalResponse.REJECT
        return GoalResponse.ACCEPT

    def _execute_goal(self, goal_handle):
        goal = goal_handle.request
        request = QueryRequest(goal.text, int(goal.action), goal.target_frame, self._now_ns())

        def feedback(fields: dict) -> None:
            goal_handle.publish_feedback(fill_message(ResolveSpatialQuery.Feedback(), fields))

        job = self._jobs.run_goal(goal_job(request, goal.navigate, feedback),
                                  lambda: goal_handle.is_cancel_requested)
        result = ResolveSpatialQuery.Result()
        fill_message(result.result, result_fields(job.outcome, job.now_ns))
        result.nav_status = int(job.nav_status)
        verdict = goal_verdict(job.outcome, goal_handle.is_cancel_requested)
        if verdict == GOAL_CANCELED:
            goal_handle.canceled()
        elif verdict == GOAL_ABORTED:
            goal_handle.abort()
        else:
            goal_handle.succeed()
        return result

    # ---- worker thread: what the core calls back ----------------------------------------------

    def _answer(self, job: Job) -> SpatialOutcome:
        return self._answerer.answer(job, self._resolver)

    def _publish_goal(self, stream: str, outcome: SpatialOutcome) -> PoseStamped:
        goal_msg = fill_message(PoseStamped(), pose_fields(
            outcome.goal.position, outcome.goal.orientation, outcome.goal.frame_id,
            outcome.frame_stamp_ns))
        (self._target_pub if stream == TARGET_POSE else self._goal_pub).publish(goal_msg)
        return goal_msg

    def _navigate(self, job: Job, outcome: SpatialOutcome, goal_msg: PoseStamped) -> None:
        goal = NavigateToPose.Goal()
        goal.pose = goal_msg

        def send(on_distance: DistanceSink):
            return self._nav_client.send_goal_async(
                goal, feedback_callback=lambda fb: on_distance(fb.feedback.distance_remaining))

        send_nav_goal(job, outcome, action_name=param(self, 'nav_action'),
                      server_timeout=param(self, 'nav_server_timeout'),
                      wait_for_server=lambda t: self._nav_client.wait_for_server(timeout_sec=t),
                      send_goal=send, active=self._active, log=self._log)

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

    def _publish_result(self, job: Job) -> None:
        pub = getattr(self, '_result_pub', None)
        if pub is not None:
            pub.publish(fill_message(SpatialResult(), result_fields(job.outcome, job.now_ns)))
        image_pub = getattr(self, '_answer_image_pub', None)
        frame = answered_frame(getattr(self, '_frames', None), job.outcome)
        if image_pub is None or frame is None:
            return
        msg = fill_message(Image(), rgb_image_fields(answer_image(frame.image, job.outcome)))
        msg.header.stamp.sec, msg.header.stamp.nanosec = ns_to_stamp(frame.stamp_ns)
        msg.header.frame_id = frame.frame_id
        image_pub.publish(msg)

    def _now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    def _log(self, level: str, line: str) -> None:
        # One call per level, each on its own line: rclpy keys a logger call by its call
        # site and raises "Logger severity cannot be changed between calls" when one site
        # logs at two severities (``getattr(logger, level)(line)`` would be one site).
        logger = self.get_logger()
        if level == 'error':
            logger.error(line)
        elif level == 'warning':
            logger.warning(line)
        else:
            logger.info(line)


def main(args=None) -> int:
    return spin(ResolverNode, num_threads=4, args=args)


if __name__ == '__main__':
    raise SystemExit(main())
