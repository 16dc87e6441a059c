"""bag_player: play a ROS 2 bag as a robot would publish it, with /clock, without rosbag2.

What ``ros2 bag play --clock`` does for replay.launch.py, on any ROS 2 with only this package:
every connection of the bag is published on its own topic with its own type, as the CDR bytes
stored in the bag (``Publisher.publish(bytes)``, no deserialisation), and bag time goes out on
/clock at ``clock_frequency`` Hz. Reading, timing, looping (stamps and clock shifted by one
bag period per pass so tf keeps working) live in the ROS-free
``spatial_llava_ros.scene.playback``; this node only maps them onto publishers.

    ros2 run spatial_llava_ros bag_player_node --ros-args -p bag:=/tmp/traj.mcap -p loop:=true

A missing or unreadable bag is one error line and exit code 1.

Fast DDS (the default RMW of Humble and Jazzy) keeps a writer's samples in a 512 KiB
shared-memory segment per process; camera images overflow it, samples are lost, and a lost
/tf sample stalls tf for a 3 s heartbeat. Unless the user gives a Fast DDS profile
(FASTRTPS_DEFAULT_PROFILES_FILE / FASTDDS_DEFAULT_PROFILES_FILE) or another RMW, main()
sizes the segment from the bag's largest messages and writes a profile for this process only
before rclpy.init (scene.playback.shm_segment_bytes says how, and what was measured).
"""

from __future__ import annotations

import importlib
import os
import tempfile
import threading
from pathlib import Path

import rclpy
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from spatial_llava_ros.errors import InputError, SpatialLlavaError
from spatial_llava_ros.nodes.params import ParamSpec
from spatial_llava_ros.nodes.ros_common import declare_specs, param
from spatial_llava_ros.nodes.stop_signals import (
    catch_stop_signals,
    ignore_stop_signals,
    release_stop_signals,
)
from spatial_llava_ros.scene.playback import (
    BagPlayback,
    BagTopic,
    PlaybackMessage,
    PlaybackOptions,
    fastdds_profile_xml,
    largest_messages,
    parse_topics,
    play,
    shm_segment_bytes,
)

NODE_NAME = 'bag_player'
FASTDDS_PROFILE_VARS = ('FASTRTPS_DEFAULT_PROFILES_FILE', 'FASTDDS_DEFAULT_PROFILES_FILE')

PLAYER_PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec('bag', '', 'ROS 2 bag to play: an .mcap / .db3 file or a rosbag2 folder',
              read_only=True),
    ParamSpec('rate', 1.0, 'playback rate (x real time)', min=0.01, max=100.0, read_only=True),
    ParamSpec('loop', True, 'replay forever; each pass shifts stamps and clock by one bag '
              'period so time never jumps back', read_only=True),
    ParamSpec('start_delay', 0.0, 'wall seconds before the first message (clock held at the '
              'bag start meanwhile)', min=0.0, max=3600.0, read_only=True),
    ParamSpec('start_offset', 0.0, 'bag seconds skipped at the start of every pass', min=0.0,
              max=1e6, read_only=True),
    ParamSpec('clock', True, 'publish bag time on /clock (for nodes with use_sim_time)',
              read_only=True),
    ParamSpec('clock_frequency', 100.0, '/clock messages per second', min=1.0, max=1000.0,
              read_only=True),
    ParamSpec('topics', '', "only these topics, space or comma separated ('' = all)",
              read_only=True),
)

# /clock: what rclpy's and rclcpp's time sources subscribe with (BEST_EFFORT, depth 1); a late
# clock sample is worthless, the next one supersedes it.
CLOCK_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                       reliability=ReliabilityPolicy.BEST_EFFORT,
                       durability=DurabilityPolicy.VOLATILE)
# /tf: tf2's TransformListener reads RELIABLE depth 100; keep as many for a slow listener.
TF_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100,
                    reliability=ReliabilityPolicy.RELIABLE,
                    durability=DurabilityPolicy.VOLATILE)
# Camera and other streams: RELIABLE KEEP_LAST 10, the rosbag2 player's default. marker_node
# reads them BEST_EFFORT depth 1 (ros_common.IMAGE_QOS), which a RELIABLE writer serves
# without back-pressure from it, and RELIABLE readers (RViz, `ros2 topic echo`, a recorder)
# match too; a BEST_EFFORT writer would leave those without data.
STREAM_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10,
                        reliability=ReliabilityPolicy.RELIABLE,
                        durability=DurabilityPolicy.VOLATILE)


def latched_qos(depth: int) -> QoSProfile:
    """/tf_static (and topics recorded TRANSIENT_LOCAL): latched as tf2 expects. Depth = the
    topic's message count in one pass, so a late subscriber gets every static transform even
    when several broadcasters each sent their own TFMessage."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=max(1, min(depth, 1000)),
                      reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL)


def message_class(msgtype: str):
    """The generated Python class of 'pkg/msg/Type' (rosidl_runtime_py when installed)."""
    try:
        from rosidl_runtime_py.utilities import get_message
    except ImportError:  # not in every install; it does the same import
        get_message = None
    try:
        if get_message is not None:
            return get_message(msgtype)
        pkg, kind, name = msgtype.split('/')
        return getattr(importlib.import_module(f'{pkg}.{kind}'), name)
    except (ValueError, ImportError, AttributeError) as exc:
        raise InputError(f'message type {msgtype} is not available in this ROS environment '
                         f'({type(exc).__name__}: {exc})') from exc


def qos_for(topic: BagTopic) -> QoSProfile:
    """The publisher QoS of a bag topic (see the profiles above)."""
    if topic.latched:
        return latched_qos(topic.count)
    return TF_QOS if topic.topic == '/tf' else STREAM_QOS


class BagPlayerNode(Node):
    """Opens the bag, creates one publisher per topic and plays on a thread of its own."""

    def __init__(self, **kwargs) -> None:
        super().__init__(NODE_NAME, **kwargs)
        declare_specs(self, PLAYER_PARAMS)
        if not param(self, 'bag'):
            raise InputError('parameter bag is empty; give the bag to play (bag:=traj.mcap)')
        options = PlaybackOptions(rate=param(self, 'rate'), loop=param(self, 'loop'),
                                  start_delay=param(self, 'start_delay'),
                                  start_offset=param(self, 'start_offset'),
                                  topics=parse_topics(param(self, 'topics')))
        self.playback = BagPlayback(param(self, 'bag'), options)
        self._pubs = {}
        try:
            for topic in self.playback.topics:
                try:
                    cls = message_class(topic.msgtype)
                except InputError as exc:
                    self.get_logger().warning(f'not playing {topic.topic}: {exc}')
                    continue
                pub = self.create_publisher(cls, topic.topic, qos_for(topic))
                # publish(bytes) sends CDR as is (Jazzy); older rclpy spells it publish_raw
                self._pubs[topic.topic] = getattr(pub, 'publish_raw', pub.publish)
            if not self._pubs:
                raise InputError(f'none of the {len(self.playback.topics)} topics of '
                                 f'{self.playback.path} has a message type available here')
        except BaseException:
            self.playback.close()
            raise
        self._clock_pub = None
        if param(self, 'clock'):
            from rosgraph_msgs.msg import Clock

            self._clock_pub = self.create_publisher(Clock, '/clock', CLOCK_QOS)
            self._clock_msg = Clock()
        self.stats = None
        self.error: str | None = None
        self.done = threading.Event()
        self._stop = threading.Event()
        self._loop_seen = 0
        self._thread = threading.Thread(target=self._run, name='bag_player', daemon=True)
        s = self.playback.schedule
        self.get_logger().info(
            f'playing {self.playback.path}: {len(self._pubs)} topics, '
            f'{self.playback.duration_s:.2f} s per pass at rate {options.rate:g}'
            f"{', looping (period %.2f s)' % (s.period_ns / 1e9) if options.loop else ''}, "
            f'after {options.start_delay:g} s' + (', /clock on' if self._clock_pub else ''))

    def start(self) -> None:
        """Start playing (on the player thread)."""
        self._thread.start()

    # ---- player thread ------------------------------------------------------------------

    def _publish(self, msg: PlaybackMessage) -> None:
        send = self._pubs.get(msg.topic)
        if send is not None:
            send(msg.data)
        if msg.loop != self._loop_seen:
            self._loop_seen = msg.loop
            self.get_logger().info(f'pass {msg.loop + 1} started', throttle_duration_sec=30.0)

    def _publish_clock(self, bag_ns: int) -> None:
        self._clock_msg.clock.sec, self._clock_msg.clock.nanosec = divmod(bag_ns, 10**9)
        self._clock_pub.publish(self._clock_msg)

    def _run(self) -> None:
        try:
            self.stats = play(self.playback, self._publish,
                              self._publish_clock if self._clock_pub is not None else None,
                              clock_hz=param(self, 'clock_frequency'), stop=self._stop)
        except SpatialLlavaError as exc:
            self.error = str(exc)
        except Exception as exc:  # noqa: BLE001 - shutdown mid-publish is not an error
            if rclpy.ok() and not self._stop.is_set():
                self.error = f'{type(exc).__name__}: {exc}'
        finally:
            self.done.set()

    def summary(self) -> str:
        """One line: what was played and how late it went out."""
        s = self.stats
        if s is None:
            return 'nothing played'
        return (f'played {s.messages} messages in {s.loops} pass(es), {s.clock_ticks} clock '
                f'ticks; late by mean {s.mean_late_s * 1e3:.1f} ms, max '
                f'{s.max_late_s * 1e3:.1f} ms')

    def close(self) -> None:
        """Stop the player thread and close the bag (called by main on the way out)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)
        self.playback.close()


def _params_file_bag(path: str) -> str | None:
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding='utf-8'))
    except (OSError, yaml.YAMLError):
        return None
    stack = [data]
    while stack:  # {'/**': {'ros__parameters': {'bag': ...}}}, also under namespaces
        item = stack.pop()
        if isinstance(item, dict):
            params = item.get('ros__parameters')
            if isinstance(params, dict) and isinstance(params.get('bag'), str):
                return params['bag']
            stack.extend(v for v in item.values() if isinstance(v, dict))
    return None


def bag_argument(argv: list[str]) -> str | None:
    """The ``bag`` parameter as given on the command line (``-p bag:=X`` wins) or in a
    ``--params-file`` (how launch passes it), read before rclpy parses them."""
    from_file = None
    for flag, value in zip(argv, argv[1:]):
        if flag in ('-p', '--param') and value.startswith('bag:='):
            return value[len('bag:='):]
        if flag == '--params-file' and from_file is None:
            from_file = _params_file_bag(value)
    return from_file


def shm_profile_for(argv: list[str]) -> tuple[str | None, str]:
    """Write a Fast DDS profile whose shared-memory segment fits the bag's messages and point
    this process at it; returns (profile path or None, what was done, for the log)."""
    if any(os.environ.get(v) for v in FASTDDS_PROFILE_VARS):
        return None, 'Fast DDS profile given by the environment; shared memory left as set there'
    rmw = os.environ.get('RMW_IMPLEMENTATION', 'rmw_fastrtps_cpp')
    if 'fastrtps' not in rmw and 'fastdds' not in rmw:
        return None, f'{rmw}: no Fast DDS shared-memory profile needed'
    bag = bag_argument(argv)
    if not bag:
        return None, 'no bag argument found; Fast DDS shared memory left at its default'
    try:
        with BagPlayback(bag) as pb:
            depths = {t.topic: qos_for(t).depth for t in pb.topics}
            sizes = largest_messages(pb)
    except SpatialLlavaError:
        return None, 'bag unreadable'  # the node reports it with the full message
    segment = shm_segment_bytes(sizes, depths)
    fd, path = tempfile.mkstemp(prefix='bag_player_fastdds_', suffix='.xml')
    with os.fdopen(fd, 'w', encoding='utf-8') as f:
        f.write(fastdds_profile_xml(segment))
    for var in FASTDDS_PROFILE_VARS:
        os.environ[var] = path
    return path, (f'Fast DDS shared-memory segment {segment >> 20} MiB for messages up to '
                  f'{max(sizes.values()) / 1e3:.0f} kB (profile {path})')


def main(args=None) -> int:
    """Play until the bag ends (loop false) or Ctrl-C; 1 (one error line) if it cannot."""
    import sys

    stopped = catch_stop_signals()  # Ctrl-C / SIGTERM = stop, see ros_common.spin
    profile, note = shm_profile_for(list(sys.argv if args is None else args))
    node = None
    code = 0
    try:
        rclpy.init(args=args)
        node = BagPlayerNode()
        node.get_logger().info(note)
        node.start()
        executor = SingleThreadedExecutor()  # parameter services only; playing is threaded
        executor.add_node(node)
        release_stop_signals()
        while rclpy.ok() and not stopped.is_set() and not node.done.is_set():
            executor.spin_once(timeout_sec=0.1)
        if node.error:
            node.get_logger().error(f'playback failed: {node.error}')
            code = 1
    except ExternalShutdownException:
        pass
    except _rclpy.RCLError:  # the wait set of a context that Ctrl-C just shut down
        if rclpy.ok():
            raise
    except (SpatialLlavaError, ValueError, ParameterException) as exc:
        rclpy.logging.get_logger(NODE_NAME).error(f'cannot play: {exc}')
        code = 1
    finally:
        if node is not None:
            node.close()
            if code == 0:  # not the node's logger: after Ctrl-C its /rosout is gone
                rclpy.logging.get_logger(NODE_NAME + '.summary').info(node.summary())
            node.destroy_node()
        rclpy.try_shutdown()
        ignore_stop_signals()
        if profile is not None:
            Path(profile).unlink(missing_ok=True)
    return code


if __name__ == '__main__':
    raise SystemExit(main())
