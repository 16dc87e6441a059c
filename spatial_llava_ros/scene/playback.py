"""Play a ROS 2 bag in real time without rosbag2: what ``ros2 bag play --clock`` does, ROS-free.

The bag is read with ``rosbags`` (MCAP file, rosbag2 folder with mcap or sqlite3 storage) and
every message is handed on as the CDR bytes stored in the bag, so the ROS side can publish them
without deserialising (``rclpy`` ``Publisher.publish(bytes)``). This module holds everything
that can be wrong about playback and is unit-tested without ROS; ``nodes/bag_player_node.py``
only maps it onto publishers.

Time. *Bag time* is the recording (log) time of the messages. Playback starts at
``start = first message + start_offset`` after ``start_delay`` wall seconds, and bag time then
advances ``rate`` times as fast as wall time; ``/clock`` carries bag time.

Looping. A synthetic (or any) bag replayed in a loop would send the same header stamps and
clock again, so time would jump back and tf2 would see old, repeated transforms. Instead, pass
``k`` of the bag is played at bag time ``+ k * period`` (``period`` = played span + one mean
message interval of the busiest topic) and every ``builtin_interfaces/Time`` in its messages
(header stamps, each TransformStamped in a TFMessage) is shifted by the same amount. Clock and
stamps keep increasing, and tf lookups on the second pass work exactly as on the first.
Stamps of zero ("latest" for tf2) are left alone. Shifting costs a rewrite of 8 bytes for
messages whose first field is a std_msgs/Header (images, camera_info) and a rosbags
deserialise + serialise for others (TFMessage); the first pass is passed through untouched.
"""

from __future__ import annotations

import math
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from spatial_llava_ros.errors import InputError

TIME_TYPE = 'builtin_interfaces/msg/Time'
HEADER_TYPE = 'std_msgs/msg/Header'
LATCHED_TOPICS = ('/tf_static',)
DEFAULT_GAP_NS = 100_000_000  # loop gap when no topic has two messages (0.1 s)


@dataclass(frozen=True)
class PlaybackOptions:
    """How to play: ``rate`` x real time, ``loop`` forever, wait ``start_delay`` wall seconds,
    skip the first ``start_offset`` bag seconds, only ``topics`` (empty = all)."""

    rate: float = 1.0
    loop: bool = False
    start_delay: float = 0.0
    start_offset: float = 0.0
    topics: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not (math.isfinite(self.rate) and 0.0 < self.rate <= 1000.0):
            raise InputError(f'rate must be in (0, 1000], got {self.rate}')
        for name in ('start_delay', 'start_offset'):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0.0):
                raise InputError(f'{name} must be a finite number of seconds >= 0, got {value}')


def parse_topics(text: str) -> tuple[str, ...]:
    """Topic names from a comma- or space-separated string ('' = all), as launch passes them."""
    names = [t for t in text.replace(',', ' ').split() if t]
    bad = [t for t in names if not t.startswith('/')]
    if bad:
        raise InputError(f'topics must be absolute names (start with /): {", ".join(bad)}')
    return tuple(dict.fromkeys(names))


@dataclass(frozen=True)
class BagTopic:
    """One topic to publish: name, ROS type ('pkg/msg/Type'), message count, latched QoS."""

    topic: str
    msgtype: str
    count: int
    latched: bool  # publish TRANSIENT_LOCAL (late subscribers get the last messages)


@dataclass(frozen=True)
class Schedule:
    """Bag time <-> wall time. ``start_ns``: bag time of the first played message;
    ``last_ns``: of the last; ``period_ns``: bag time between the starts of two passes."""

    start_ns: int
    last_ns: int
    period_ns: int
    rate: float = 1.0
    delay_s: float = 0.0

    def bag_time(self, log_ns: int, loop: int) -> int:
        """The bag time of a message logged at ``log_ns``, played in pass ``loop``."""
        return log_ns + loop * self.period_ns

    def due_s(self, bag_ns: int) -> float:
        """Wall seconds after the player started at which ``bag_ns`` is due."""
        return self.delay_s + (bag_ns - self.start_ns) / 1e9 / self.rate

    def clock_ns(self, elapsed_s: float) -> int:
        """Bag time ``elapsed_s`` wall seconds after the player started (start during delay)."""
        return self.start_ns + int(round(max(0.0, elapsed_s - self.delay_s) * self.rate * 1e9))


@dataclass(frozen=True)
class PlaybackMessage:
    """One message to publish now: its CDR bytes with stamps already shifted for ``loop``."""

    topic: str
    msgtype: str
    data: bytes
    bag_ns: int  # bag time it is played at (log time + loop * period)
    due_s: float  # wall seconds after the player started
    loop: int


class StampShifter:
    """Adds an offset to every non-zero builtin_interfaces/Time in a CDR message."""

    def __init__(self, typestore) -> None:
        self.typestore = typestore
        self._has_time: dict[str, bool] = {}
        self._patchable: dict[str, bool] = {}  # shift by rewriting the header's 8 bytes

    def _fields(self, msgtype: str) -> list:
        try:
            return self.typestore.fielddefs[msgtype][1]
        except KeyError as exc:
            raise InputError(f'no definition of message type {msgtype} in the bag or the '
                             'default typestore') from exc

    @staticmethod
    def _sub_type(node):
        """The message type name a field node refers to (directly or as elements), or None."""
        kind, detail = node
        name = getattr(kind, 'name', str(kind))
        if name == 'NAME':
            return detail
        if name in ('ARRAY', 'SEQUENCE'):
            return StampShifter._sub_type(detail[0])
        return None

    def has_time(self, msgtype: str) -> bool:
        """Whether ``msgtype`` holds a Time anywhere (cached)."""
        if msgtype == TIME_TYPE:
            return True
        if msgtype not in self._has_time:
            self._has_time[msgtype] = False  # recursion guard
            self._has_time[msgtype] = any(
                sub is not None and self.has_time(sub)
                for sub in (self._sub_type(node) for _, node in self._fields(msgtype)))
        return self._has_time[msgtype]

    def header_first(self, msgtype: str) -> bool:
        """True when the message starts with a std_msgs/Header (its stamp is at CDR byte 4)."""
        fields = self._fields(msgtype)
        return bool(fields) and self._sub_type(fields[0][1]) == HEADER_TYPE and \
            getattr(fields[0][1][0], 'name', '') == 'NAME'

    def shift(self, msgtype: str, data: bytes, offset_ns: int) -> bytes:
        """``data`` with every non-zero Time moved by ``offset_ns`` (unchanged when 0)."""
        if offset_ns == 0 or not self.has_time(msgtype):
            return bytes(data)
        if len(data) < 4 or data[0] != 0 or data[1] not in (0, 1):
            raise InputError(f'{msgtype}: not plain CDR (encapsulation {bytes(data[:4]).hex()})')
        if self._header_patchable(msgtype):
            return self._shift_header(data, offset_ns)
        msg = self.typestore.deserialize_cdr(data, msgtype)
        self._shift_msg(msg, msgtype, offset_ns)
        return bytes(self.typestore.serialize_cdr(msg, msgtype,
                                                  little_endian=data[1] == 1))

    def _header_patchable(self, msgtype: str) -> bool:
        """The message starts with a Header and no other field holds a Time, so patching the
        stamp's 8 bytes is the whole shift (cached: asked for every message)."""
        if msgtype not in self._patchable:
            rest = self._fields(msgtype)[1:]
            self._patchable[msgtype] = self.header_first(msgtype) and not any(
                sub is not None and self.has_time(sub)
                for sub in (self._sub_type(node) for _, node in rest))
        return self._patchable[msgtype]

    @staticmethod
    def _shift_header(data: bytes, offset_ns: int) -> bytes:
        fmt = '<iI' if data[1] == 1 else '>iI'
        sec, nsec = struct.unpack_from(fmt, data, 4)
        if sec == 0 and nsec == 0:
            return bytes(data)
        total = sec * 10**9 + nsec + offset_ns
        out = bytearray(data)
        struct.pack_into(fmt, out, 4, total // 10**9, total % 10**9)
        return bytes(out)

    def _shift_msg(self, msg, msgtype: str, offset_ns: int) -> None:
        for name, node in self._fields(msgtype):
            sub = self._sub_type(node)
            if sub is None or not self.has_time(sub):
                continue
            value = getattr(msg, name)
            items = value if getattr(node[0], 'name', '') in ('ARRAY', 'SEQUENCE') else [value]
            for item in items:
                if sub == TIME_TYPE:
                    total = item.sec * 10**9 + item.nanosec
                    if total:
                        total += offset_ns
                        item.sec, item.nanosec = total // 10**9, total % 10**9
                else:
                    self._shift_msg(item, sub, offset_ns)


def _open_reader(path: Path):
    from rosbags.highlevel import AnyReader, AnyReaderError
    from rosbags.typesys import Stores, get_typestore

    if not path.exists():
        raise InputError(f"bag '{path}' does not exist; write one with "
                         '`spatial-llava bag --out traj.mcap`')
    if path.suffix == '.bag':
        raise InputError(f'{path}: a ROS 1 bag; only ROS 2 bags (.mcap, .db3 or a rosbag2 '
                         'folder) hold CDR that can be published as is')
    try:
        reader = AnyReader([path], default_typestore=get_typestore(Stores.ROS2_HUMBLE))
        reader.open()
    except (AnyReaderError, OSError) as exc:
        raise InputError(f'{path}: cannot read the bag ({exc})') from exc
    return reader


class BagPlayback:
    """A bag opened for playback: its topics, the schedule, and the messages in play order.

    Use as a context manager (or call ``close``)."""

    def __init__(self, path: str | Path, options: PlaybackOptions | None = None) -> None:
        self.path = Path(path)
        self.options = options or PlaybackOptions()
        self._reader = _open_reader(self.path)
        try:
            self._setup()
        except BaseException:
            self.close()
            raise

    def _setup(self) -> None:
        reader, opts = self._reader, self.options
        conns = [c for c in reader.connections
                 if getattr(c.ext, 'serialization_format', 'cdr') == 'cdr']
        present = sorted({c.topic for c in conns})
        if opts.topics:
            missing = [t for t in opts.topics if t not in present]
            if missing:
                raise InputError(f'{self.path}: no topic(s) {", ".join(missing)} in the bag; '
                                 f'it has {", ".join(present) or "none"}')
            conns = [c for c in conns if c.topic in opts.topics]
        if not conns or sum(c.msgcount for c in conns) == 0:
            raise InputError(f'{self.path}: no messages to play ({len(reader.connections)} '
                             'connections)')
        self.connections = conns
        by_topic: dict[str, list] = {}
        for c in conns:
            by_topic.setdefault(c.topic, []).append(c)
        topics = []
        for name, group in by_topic.items():
            types = {c.msgtype for c in group}
            if len(types) > 1:
                raise InputError(f'{self.path}: topic {name} has {len(types)} types '
                                 f'({", ".join(sorted(types))})')
            profiles = [q for c in group for q in getattr(c.ext, 'offered_qos_profiles', [])]
            latched = name in LATCHED_TOPICS or (bool(profiles) and all(
                getattr(q.durability, 'name', '') == 'TRANSIENT_LOCAL' for q in profiles))
            topics.append(BagTopic(name, types.pop(), sum(c.msgcount for c in group), latched))
        self.topics: tuple[BagTopic, ...] = tuple(topics)

        first, last = int(reader.start_time), int(reader.end_time) - 1  # end is last + 1
        start = first + int(round(opts.start_offset * 1e9))
        if start > last:
            raise InputError(f'start_offset {opts.start_offset:g} s is past the end of the bag '
                             f'({(last - first) / 1e9:.3f} s long)')
        busiest = max(t.count for t in self.topics)
        gap = (last - first) // (busiest - 1) if busiest > 1 and last > first else DEFAULT_GAP_NS
        self.schedule = Schedule(start, last, (last - start) + max(gap, 1), opts.rate,
                                 opts.start_delay)
        self.shifter = StampShifter(reader.typestore)
        for t in self.topics:  # unknown types fail here, not in the middle of playback
            self.shifter.has_time(t.msgtype)

    @property
    def duration_s(self) -> float:
        """Bag seconds of one pass."""
        return (self.schedule.last_ns - self.schedule.start_ns) / 1e9

    def messages(self, max_loops: int | None = None) -> Iterator[PlaybackMessage]:
        """Messages in play order, pass after pass when looping (``max_loops`` caps the number
        of passes; None = one pass, or forever with ``loop``)."""
        from rosbags.highlevel import AnyReaderError
        from rosbags.rosbag2 import ReaderError

        passes = max_loops if max_loops is not None else (None if self.options.loop else 1)
        sched = self.schedule
        loop = 0
        while passes is None or loop < passes:
            offset = loop * sched.period_ns
            count = 0
            try:
                for conn, log_ns, data in self._reader.messages(connections=self.connections,
                                                                start=sched.start_ns):
                    bag_ns = sched.bag_time(log_ns, loop)
                    data = self.shifter.shift(conn.msgtype, data, offset)
                    count += 1
                    yield PlaybackMessage(conn.topic, conn.msgtype, data, bag_ns,
                                          sched.due_s(bag_ns), loop)
            except (AnyReaderError, ReaderError, struct.error, EOFError, OSError) as exc:
                raise InputError(f'{self.path}: cannot read the bag after {count} messages '
                                 f'of pass {loop + 1} ({exc})') from exc
            if count == 0:
                raise InputError(f'{self.path}: pass {loop + 1} read no messages although the '
                                 f'index lists {sum(t.count for t in self.topics)} '
                                 '(corrupt bag?)')
            loop += 1

    def close(self) -> None:
        """Close the bag file."""
        reader, self._reader = getattr(self, '_reader', None), None
        if reader is not None:
            reader.close()

    def __enter__(self) -> BagPlayback:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class PlaybackStats:
    """What a run played, and how late (wall seconds after due) messages went out."""

    messages: int = 0
    clock_ticks: int = 0
    loops: int = 0
    last_bag_ns: int = 0
    max_late_s: float = 0.0
    total_late_s: float = 0.0
    per_topic: dict[str, int] = field(default_factory=dict)

    @property
    def mean_late_s(self) -> float:
        return self.total_late_s / self.messages if self.messages else 0.0


def largest_messages(playback: BagPlayback, max_messages: int = 400) -> dict[str, int]:
    """The largest CDR size per topic among the first ``max_messages`` messages of an open
    bag (sensor messages keep their size, so this bounds a pass without reading it all)."""
    sizes: dict[str, int] = {}
    for i, msg in enumerate(playback.messages(max_loops=1)):
        sizes[msg.topic] = max(sizes.get(msg.topic, 0), len(msg.data))
        if i + 1 >= max_messages:
            break
    return sizes


def shm_segment_bytes(sizes: dict[str, int], depths: dict[str, int]) -> int:
    """Shared-memory segment a DDS writer participant needs to hold every publisher's
    history (``depths[topic]`` samples, 10 if absent) plus two in flight, doubled for the
    allocator, in whole MiB (so at least 1 MiB; Fast DDS's default is 512 KiB).

    Why: Fast DDS keeps every sample a writer holds in one shared-memory segment per
    participant, 512 KiB by default. One 320x240 colour + depth pair (0.53 MB) already
    overflows it; a sample that finds no room is lost, and a lost sample on a RELIABLE topic
    (/tf) blocks that topic's in-order delivery until the next heartbeat (3 s): measured as
    3.0 s gaps in /tf at a subscriber while the replay system ran."""
    need = sum(size * (depths.get(topic, 10) + 2) for topic, size in sizes.items())
    mib = 1 << 20
    return max(mib, -(-2 * need // mib) * mib)


def fastdds_profile_xml(segment_bytes: int) -> str:
    """A Fast DDS XML profile: the default transports (shared memory, then UDPv4) with a
    shared-memory segment of ``segment_bytes``."""
    if segment_bytes <= 0:
        raise InputError(f'shared-memory segment must be > 0 bytes, got {segment_bytes}')
    return (
        '<?xml version="1.0" encoding="UTF-8" ?>\n'
        '<profiles xmlns="http://www.eprosima.com/XMLSchemas/fastRTPS_Profiles">\n'
        '  <transport_descriptors>\n'
        '    <transport_descriptor>\n'
        '      <transport_id>bag_player_shm</transport_id>\n'
        '      <type>SHM</type>\n'
        f'      <segment_size>{int(segment_bytes)}</segment_size>\n'
        '    </transport_descriptor>\n'
        '    <transport_descriptor>\n'
        '      <transport_id>bag_player_udp</transport_id>\n'
        '      <type>UDPv4</type>\n'
        '    </transport_descriptor>\n'
        '  </transport_descriptors>\n'
        '  <participant profile_name="bag_player" is_default_profile="true">\n'
        '    <rtps>\n'
        '      <userTransports>\n'
        '        <transport_id>bag_player_shm</transport_id>\n'
        '        <transport_id>bag_player_udp</transport_id>\n'
        '      </userTransports>\n'
        '      <useBuiltinTransports>false</useBuiltinTransports>\n'
        '    </rtps>\n'
        '  </participant>\n'
        '</profiles>\n')


def play(playback: BagPlayback, publish: Callable[[PlaybackMessage], None],
         publish_clock: Callable[[int], None] | None = None, *, clock_hz: float = 100.0,
         stop: threading.Event | None = None, max_loops: int | None = None,
         now: Callable[[], float] = time.monotonic,
         wait: Callable[[float], bool] | None = None) -> PlaybackStats:
    """Publish every message when due and the bag clock ``clock_hz`` times a second (and right
    before each message, so no subscriber gets a message stamped ahead of /clock). Returns when
    the bag ends (not looping), after ``max_loops`` passes, or when ``stop`` is set.
    ``now``/``wait`` (a sleep that returns True when stopped) are injectable for tests."""
    if publish_clock is not None and not (math.isfinite(clock_hz) and clock_hz > 0):
        raise InputError(f'clock_hz must be > 0, got {clock_hz}')
    stop = stop or threading.Event()
    wait = wait or stop.wait
    sched = playback.schedule
    stats = PlaybackStats()
    t0 = now()
    tick = 1.0 / clock_hz if publish_clock is not None else math.inf
    next_tick = t0 if publish_clock is not None else math.inf
    last_clock = [sched.start_ns - 1]

    def emit_clock(t: float) -> None:
        value = max(sched.clock_ns(t - t0), last_clock[0])
        last_clock[0] = value
        publish_clock(value)
        stats.clock_ticks += 1

    for msg in playback.messages(max_loops):
        due = t0 + msg.due_s
        while True:
            if stop.is_set():
                return stats
            t = now()
            if t >= next_tick:
                emit_clock(t)
                next_tick = max(next_tick + tick, t)  # no burst after a stall
            if t >= due:
                break
            if wait(max(0.0, min(due, next_tick) - t)):
                return stats
        t = now()
        if publish_clock is not None:
            emit_clock(t)
        publish(msg)
        late = max(0.0, t - due)
        stats.messages += 1
        stats.loops = msg.loop + 1
        stats.last_bag_ns = msg.bag_ns
        stats.max_late_s = max(stats.max_late_s, late)
        stats.total_late_s += late
        stats.per_topic[msg.topic] = stats.per_topic.get(msg.topic, 0) + 1
    return stats
