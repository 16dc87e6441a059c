"""Marker node: camera frames in, Set-of-Marks image + MarkArray out.

Colour, depth and camera_info are paired with message_filters' ApproximateTimeSynchronizer
(colour + camera_info only when ``use_depth`` is false). The synchronised set goes into a
one-slot mailbox and a worker thread marks the newest set: a frame that arrives while the
previous one is being marked replaces the waiting one, and a frame older than
``max_frame_age`` when the worker gets to it is dropped, so marking never queues up and
never blocks the executor. Published with the camera frame's header:
``marked_image`` (rgb8) and ``marks`` (spatial_llava_ros/MarkArray).
"""

from __future__ import annotations

import threading

import message_filters
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image

from spatial_llava_ros.errors import SpatialLlavaError
from spatial_llava_ros.marks.engine import MarkEngine, MarkerConfig
from spatial_llava_ros.msg import Mark, MarkArray
from spatial_llava_ros.nodes.conversions import (
    decode_color,
    decode_depth,
    detections_to_inputs,
    fill_message,
    intrinsics_from_camera_info,
    mark_fields,
    rgb_image_fields,
    stamp_to_ns,
)
from spatial_llava_ros.nodes.frame_watch import FrameWatch
from spatial_llava_ros.nodes.params import MARKER_PARAMS
from spatial_llava_ros.nodes.ros_common import (
    COMMAND_QOS,
    IMAGE_QOS,
    MARKED_QOS,
    declare_specs,
    param,
    spin,
)
from spatial_llava_ros.pipeline import FrameBuffer, FrameRecord, frame_age_seconds


class _Mailbox:
    """Holds only the newest item; ``take`` waits for one. Counts what it overwrote."""

    def __init__(self) -> None:
        self._item = None
        self._cond = threading.Condition()
        self.overwritten = 0
        self.closed = False

    def put(self, item) -> None:
        with self._cond:
            if self._item is not None:
                self.overwritten += 1
            self._item = item
            self._cond.notify()

    def take(self, timeout: float):
        with self._cond:
            if self._item is None and not self.closed:
                self._cond.wait(timeout)
            item, self._item = self._item, None
            return item

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()


class MarkerNode(Node):
    """Marks synchronised camera frames; see the module docstring."""

    def __init__(self, **kwargs) -> None:
        super().__init__('marker_node', **kwargs)
        declare_specs(self, MARKER_PARAMS)
        config = MarkerConfig(
            proposals=param(self, 'proposals'), style=param(self, 'style'),
            text_height_336=param(self, 'text_height_336'),
            label_placement=param(self, 'label_placement'),
            min_area=param(self, 'min_area'), max_marks=param(self, 'max_marks'),
            centroid_trim=param(self, 'centroid_trim'),
            sam_path=param(self, 'sam_path') or None)
        self.engine = MarkEngine(config)
        self.use_depth = bool(param(self, 'use_depth'))
        self.frames = FrameBuffer(5)  # the last few marked frames, for in-process users
        self._detections = None
        self._mailbox = _Mailbox()
        self._dropped_stale = 0

        self.image_pub = self.create_publisher(Image, param(self, 'marked_image_topic'),
                                               MARKED_QOS)
        self.marks_pub = self.create_publisher(MarkArray, param(self, 'marks_topic'), MARKED_QOS)

        color = message_filters.Subscriber(self, Image, param(self, 'color_topic'),
                                           qos_profile=IMAGE_QOS)
        info = message_filters.Subscriber(self, CameraInfo, param(self, 'camera_info_topic'),
                                          qos_profile=IMAGE_QOS)
        subs = [color, info]
        if self.use_depth:
            subs.append(message_filters.Subscriber(self, Image, param(self, 'depth_topic'),
                                                   qos_profile=IMAGE_QOS))
        self._subs = subs
        self._sync = message_filters.ApproximateTimeSynchronizer(
            subs, queue_size=param(self, 'sync_queue_size'), slop=param(self, 'sync_slop'))
        self._sync.registerCallback(self._on_frame)
        self._watch_camera(subs)
        if param(self, 'use_detections'):
            from vision_msgs.msg import Detection2DArray

            self.create_subscription(Detection2DArray, param(self, 'detections_topic'),
                                     self._on_detections, COMMAND_QOS)

        self._running = True
        self._worker = threading.Thread(target=self._work, name='marker_worker', daemon=True)
        self._worker.start()
        self.get_logger().info(
            f"marking {'colour + depth' if self.use_depth else 'colour only'} frames with "
            f"'{config.proposals}' proposals")

    # ---- executor side: cheap, never blocks -----------------------------------------------

    def _on_frame(self, color: Image, info: CameraInfo, depth: Image | None = None) -> None:
        self._watch.frame(self._steady_s())
        self._mailbox.put((color, info, depth))

    def _watch_camera(self, subs: list) -> None:
        # wall (steady) time: with use_sim_time and no /clock a ROS timer would never fire
        roles = ['colour', 'camera_info', 'depth'][:len(subs)]
        self._steady = Clock(clock_type=ClockType.STEADY_TIME)
        self._watch = FrameWatch({r: s.sub.topic_name for r, s in zip(roles, subs)},
                                 after_s=param(self, 'no_frame_warning'))
        for role, sub in zip(roles, subs):
            sub.registerCallback(lambda *_, role=role: self._watch.message(role))
        self._watch.start(self._steady_s())
        if self._watch.after_s > 0:
            self.create_timer(1.0, self._check_camera, clock=self._steady)

    def _steady_s(self) -> float:
        return self._steady.now().nanoseconds * 1e-9

    def _check_camera(self) -> None:
        warning = self._watch.check(self._steady_s())
        if warning:
            self.get_logger().warning(warning)

    def _on_detections(self, msg) -> None:
        self._detections = msg

    # ---- worker side --------------------------------------------------------------------

    def _work(self) -> None:
        while self._running:
            item = self._mailbox.take(timeout=0.5)
            if item is None:
                continue
            try:
                self._mark(*item)
            except SpatialLlavaError as exc:  # a bad frame: say why, keep going
                self.get_logger().warning(f'frame not marked: {exc}', throttle_duration_sec=5.0)
            except Exception as exc:  # noqa: BLE001 - the worker must survive a bug
                if not self.context.ok():  # Ctrl-C shut the context before close(): quiet exit
                    break
                self.get_logger().error(f'marking failed: {type(exc).__name__}: {exc}',
                                        throttle_duration_sec=5.0)

    def _matching_detections(self, stamp_ns: int, width: int, height: int):
        det = self._detections
        if det is None:
            return None
        det_ns = stamp_to_ns(det.header.stamp.sec, det.header.stamp.nanosec)
        if abs(det_ns - stamp_ns) > param(self, 'sync_slop') * 1e9:
            return None
        return detections_to_inputs(det.detections, width, height)

    def _mark(self, color: Image, info: CameraInfo, depth: Image | None) -> None:
        stamp_ns = stamp_to_ns(color.header.stamp.sec, color.header.stamp.nanosec)
        max_age = param(self, 'max_frame_age')
        age = frame_age_seconds(stamp_ns, self.get_clock().now().nanoseconds)
        if max_age > 0 and age > max_age:
            self._dropped_stale += 1
            self.get_logger().warning(
                f'dropped a {age:.2f} s old frame (max_frame_age {max_age:.2f} s); '
                f'{self._dropped_stale} stale so far', throttle_duration_sec=5.0)
            return
        rgb = decode_color(color)
        depth_m = decode_depth(depth) if depth is not None else None
        intrinsics = intrinsics_from_camera_info(info.k, info.width, info.height)
        dets = self._matching_detections(stamp_ns, rgb.shape[1], rgb.shape[0])
        marked = self.engine.process(rgb, depth_m, intrinsics, detections=dets,
                                     stamp_ns=stamp_ns)
        frame_id = param(self, 'camera_frame') or info.header.frame_id or color.header.frame_id
        self.frames.add(FrameRecord.from_marked_frame(marked, frame_id))

        image_msg = fill_message(Image(), rgb_image_fields(marked.image))
        image_msg.header = color.header
        image_msg.header.frame_id = frame_id
        marks_msg = MarkArray()
        marks_msg.header = image_msg.header
        marks_msg.width, marks_msg.height = int(rgb.shape[1]), int(rgb.shape[0])
        marks_msg.marks = [fill_message(Mark(), mark_fields(m)) for m in marked.marks]
        self.image_pub.publish(image_msg)
        self.marks_pub.publish(marks_msg)
        for note in marked.notes:
            self.get_logger().debug(note)

    def close(self) -> None:
        """Stop the worker (called by main on shutdown)."""
        self._running = False
        self._mailbox.close()
        self._worker.join(timeout=5.0)


def main(args=None) -> int:
    return spin(MarkerNode, num_threads=2, args=args)


if __name__ == '__main__':
    raise SystemExit(main())
