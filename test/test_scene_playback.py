"""Bag playback without ROS (spatial_llava_ros.scene.playback): schedule, loop stamp shifting,
pacing and clock with an injected clock, and bad bags as InputError."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip('rosbags')

from spatial_llava_ros.errors import InputError  # noqa: E402
from spatial_llava_ros.scene.bag import COLOR_TOPIC, DEPTH_TOPIC, INFO_TOPIC, write_bag  # noqa: E402
from spatial_llava_ros.scene.playback import (  # noqa: E402
    BagPlayback,
    PlaybackOptions,
    Schedule,
    StampShifter,
    fastdds_profile_xml,
    largest_messages,
    parse_topics,
    play,
    shm_segment_bytes,
)
from spatial_llava_ros.scene.trajectory import render_trajectory  # noqa: E402

N_FRAMES, FPS = 4, 10.0
FRAME_NS = int(1e9 / FPS)


@pytest.fixture(scope='module')
def frames():
    return render_trajectory(1, N_FRAMES, 64, 48, fps=FPS).frames


@pytest.fixture(scope='module')
def bag(frames, tmp_path_factory) -> Path:
    return write_bag(frames, tmp_path_factory.mktemp('bag') / 'traj.mcap')


@pytest.fixture(scope='module')
def typestore():
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_HUMBLE)


def _stamps(typestore, msg) -> list[int]:
    """Every header stamp of a played message (one per TransformStamped for TFMessage)."""
    obj = typestore.deserialize_cdr(msg.data, msg.msgtype)
    headers = [t.header for t in obj.transforms] if hasattr(obj, 'transforms') else [obj.header]
    return [h.stamp.sec * 10**9 + h.stamp.nanosec for h in headers]


class FakeTime:
    """A monotonic clock that only moves when the player sleeps."""

    def __init__(self) -> None:
        self.t = 50.0
        self.sleeps = 0

    def now(self) -> float:
        return self.t

    def wait(self, dt: float) -> bool:
        self.sleeps += 1
        self.t += dt
        return False


# ---- options and schedule -------------------------------------------------------------

@pytest.mark.parametrize('kwargs', [{'rate': 0.0}, {'rate': -1.0}, {'rate': float('nan')},
                                    {'start_delay': -0.1}, {'start_offset': float('inf')}])
def test_bad_options_are_input_errors(kwargs):
    with pytest.raises(InputError, match=next(iter(kwargs))):
        PlaybackOptions(**kwargs)


def test_parse_topics():
    assert parse_topics('') == ()
    assert parse_topics('/tf, /tf_static /a,/tf') == ('/tf', '/tf_static', '/a')
    with pytest.raises(InputError, match='camera'):
        parse_topics('/tf camera')


def test_schedule_rate_delay_and_clock():
    s = Schedule(start_ns=10**9, last_ns=2 * 10**9, period_ns=11 * 10**8, rate=2.0, delay_s=3.0)
    assert s.due_s(10**9) == 3.0
    assert s.due_s(2 * 10**9) == pytest.approx(3.5)  # 1 bag second at rate 2
    assert s.bag_time(10**9, 2) == 10**9 + 2 * 11 * 10**8
    assert s.clock_ns(0.0) == 10**9 and s.clock_ns(2.9) == 10**9  # held at start during delay
    assert s.clock_ns(4.0) == 3 * 10**9


# ---- the bag: topics, one pass, loops ------------------------------------------------------

def test_topics_schedule_and_latched_tf_static(bag, frames):
    with BagPlayback(bag, PlaybackOptions(loop=True)) as pb:
        topics = {t.topic: t for t in pb.topics}
        assert set(topics) == {'/tf', '/tf_static', COLOR_TOPIC, DEPTH_TOPIC, INFO_TOPIC}
        assert topics[COLOR_TOPIC].msgtype == 'sensor_msgs/msg/Image'
        assert topics[COLOR_TOPIC].count == N_FRAMES and topics['/tf_static'].count == 1
        assert [t.topic for t in pb.topics if t.latched] == ['/tf_static']
        s = pb.schedule
        assert s.start_ns == frames[0].stamp_ns and s.last_ns == frames[-1].stamp_ns
        assert s.period_ns == N_FRAMES * FRAME_NS  # span + one frame interval
        assert pb.duration_s == pytest.approx((N_FRAMES - 1) / FPS)


def test_first_pass_is_the_bag_unchanged(bag):
    from rosbags.highlevel import AnyReader

    with AnyReader([bag]) as reader:
        raw = [(c.topic, t, bytes(d)) for c, t, d in reader.messages()]
    with BagPlayback(bag) as pb:
        played = list(pb.messages())
    assert [(m.topic, m.bag_ns, m.data) for m in played] == raw
    assert len(played) == 4 * N_FRAMES + 1
    assert [m.due_s for m in played] == sorted(m.due_s for m in played)
    assert {m.loop for m in played} == {0}


def test_loops_shift_every_stamp_and_keep_time_increasing(bag, typestore):
    with BagPlayback(bag, PlaybackOptions(loop=True)) as pb:
        period = pb.schedule.period_ns
        played = list(pb.messages(max_loops=3))
    assert len(played) == 3 * (4 * N_FRAMES + 1)
    times = [m.bag_ns for m in played]
    assert times == sorted(times)
    passes = [[m for m in played if m.loop == k] for k in range(3)]
    assert passes[1][0].bag_ns > passes[0][-1].bag_ns
    for k in (1, 2):
        for first, again in zip(passes[0], passes[k], strict=True):
            assert again.topic == first.topic
            assert again.bag_ns == first.bag_ns + k * period
            assert _stamps(typestore, again) == [s + k * period
                                                 for s in _stamps(typestore, first)]
            if again.msgtype == 'sensor_msgs/msg/Image':  # pixels untouched
                a = typestore.deserialize_cdr(again.data, again.msgtype)
                b = typestore.deserialize_cdr(first.data, first.msgtype)
                assert np.array_equal(a.data, b.data)


def test_start_offset_and_topic_filter(bag, frames):
    opts = PlaybackOptions(start_offset=0.15, topics=(COLOR_TOPIC, '/tf'))
    with BagPlayback(bag, opts) as pb:
        played = list(pb.messages())
    assert {m.topic for m in played} == {COLOR_TOPIC, '/tf'}
    assert [m.bag_ns for m in played if m.topic == COLOR_TOPIC] == \
        [f.stamp_ns for f in frames[2:]]
    assert played[0].due_s == pytest.approx(0.05)  # 0.2 s frame, played from 0.15 s


def test_rosbag2_folder_plays_too(frames, tmp_path):
    folder = write_bag(frames[:2], tmp_path / 'folder_bag')
    assert folder.is_dir()
    with BagPlayback(folder) as pb:
        assert len(list(pb.messages())) == 4 * 2 + 1


# ---- stamp shifting ---------------------------------------------------------------------

def _image(typestore, stamp_ns: int):
    t = typestore.types
    header = t['std_msgs/msg/Header'](
        stamp=t['builtin_interfaces/msg/Time'](sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9),
        frame_id='cam')
    return t['sensor_msgs/msg/Image'](header=header, height=2, width=3, encoding='rgb8',
                                      is_bigendian=0, step=9,
                                      data=np.arange(18, dtype=np.uint8))


@pytest.mark.parametrize('little_endian', [True, False])
def test_header_patch_equals_full_reserialisation(typestore, little_endian):
    shifter = StampShifter(typestore)
    raw = bytes(typestore.serialize_cdr(_image(typestore, 5 * 10**9 + 900_000_000),
                                        'sensor_msgs/msg/Image', little_endian=little_endian))
    fast = shifter.shift('sensor_msgs/msg/Image', raw, 250_000_000)
    expected = bytes(typestore.serialize_cdr(_image(typestore, 6 * 10**9 + 150_000_000),
                                             'sensor_msgs/msg/Image',
                                             little_endian=little_endian))
    assert fast == expected
    assert shifter.header_first('sensor_msgs/msg/Image')
    assert not shifter.header_first('tf2_msgs/msg/TFMessage')


def test_zero_stamps_stay_zero_and_stampless_types_pass_through(typestore):
    shifter = StampShifter(typestore)
    raw = bytes(typestore.serialize_cdr(_image(typestore, 0), 'sensor_msgs/msg/Image'))
    assert shifter.shift('sensor_msgs/msg/Image', raw, 10**9) == raw
    s = typestore.types['std_msgs/msg/String'](data='hi')
    raw = bytes(typestore.serialize_cdr(s, 'std_msgs/msg/String'))
    assert not shifter.has_time('std_msgs/msg/String')
    assert shifter.shift('std_msgs/msg/String', raw, 10**9) == raw


def test_a_time_after_the_header_is_shifted_too(typestore):
    """sensor_msgs/TimeReference: header first, then time_ref; the 8-byte patch is not enough."""
    t = typestore.types
    stamp = t['builtin_interfaces/msg/Time']
    msg = t['sensor_msgs/msg/TimeReference'](
        header=t['std_msgs/msg/Header'](stamp=stamp(sec=10, nanosec=0), frame_id='x'),
        time_ref=stamp(sec=20, nanosec=999_999_999), source='gps')
    raw = bytes(typestore.serialize_cdr(msg, 'sensor_msgs/msg/TimeReference'))
    out = StampShifter(typestore).shift('sensor_msgs/msg/TimeReference', raw, 2)
    back = typestore.deserialize_cdr(out, 'sensor_msgs/msg/TimeReference')
    assert (back.header.stamp.sec, back.header.stamp.nanosec) == (10, 2)
    assert (back.time_ref.sec, back.time_ref.nanosec) == (21, 1)
    assert back.source == 'gps'


# ---- pacing and clock ----------------------------------------------------------------------

def test_play_publishes_on_time_with_a_monotonic_clock(bag):
    fake = FakeTime()
    sent, clock = [], []
    opts = PlaybackOptions(loop=True, start_delay=1.0, rate=2.0)
    with BagPlayback(bag, opts) as pb:
        start = pb.schedule.start_ns
        stats = play(pb, lambda m: sent.append((fake.t, m, len(clock))), clock.append,
                     clock_hz=50.0, max_loops=2, now=fake.now, wait=fake.wait)
        period = pb.schedule.period_ns
    t0 = 50.0
    assert stats.messages == len(sent) == 2 * (4 * N_FRAMES + 1) and stats.loops == 2
    for t, msg, n_clock in sent:
        assert t == pytest.approx(t0 + msg.due_s)  # never early, never late with fake time
        assert clock[n_clock - 1] >= msg.bag_ns  # /clock reached the stamp before the message
    assert sent[0][0] == pytest.approx(t0 + 1.0)  # start_delay
    # rate 2: the second pass starts one period of bag time = period / 2 wall seconds later
    second = next(t for t, m, _ in sent if m.loop == 1)
    assert second - sent[0][0] == pytest.approx(period / 2e9)
    assert clock == sorted(clock) and clock[0] == start
    assert clock[-1] == sent[-1][1].bag_ns
    # >= 50 Hz: ticks over the run cover every 1/50 s of wall time
    assert stats.clock_ticks >= (fake.t - t0) * 50.0
    assert stats.max_late_s == 0.0 and stats.per_topic[COLOR_TOPIC] == 2 * N_FRAMES


def test_play_without_clock_and_stop(bag):
    fake = FakeTime()
    stop = threading.Event()
    sent = []

    def publish(msg):
        sent.append(msg)
        if len(sent) == 3:
            stop.set()

    with BagPlayback(bag, PlaybackOptions(loop=True)) as pb:
        stats = play(pb, publish, None, stop=stop, now=fake.now, wait=fake.wait)
    assert len(sent) == 3 and stats.messages == 3 and stats.clock_ticks == 0


def test_play_in_real_time_ends_after_one_pass(bag):
    with BagPlayback(bag, PlaybackOptions(rate=20.0)) as pb:
        stats = play(pb, lambda m: None, lambda c: None)
    assert stats.messages == 4 * N_FRAMES + 1 and stats.loops == 1


# ---- bad bags ---------------------------------------------------------------------------

def test_missing_bag(tmp_path):
    with pytest.raises(InputError, match='does not exist'):
        BagPlayback(tmp_path / 'nope.mcap')


def test_garbage_truncated_ros1_and_empty_folder(bag, tmp_path):
    garbage = tmp_path / 'garbage.mcap'
    garbage.write_bytes(bytes(range(256)) * 8)
    truncated = tmp_path / 'truncated.mcap'
    truncated.write_bytes(bag.read_bytes()[: bag.stat().st_size // 2])
    ros1 = tmp_path / 'old.bag'
    ros1.write_bytes(b'#ROSBAG V2.0\n')
    empty = tmp_path / 'empty_dir'
    empty.mkdir()
    for path in (garbage, truncated, ros1, empty):
        with pytest.raises(InputError, match=path.name):
            BagPlayback(path)


def test_unreadable_messages_are_an_input_error(bag, tmp_path):
    broken = tmp_path / 'broken.mcap'
    shutil.copy(bag, broken)
    data = bytearray(broken.read_bytes())
    data[60:124] = bytes(64)  # the first records: index intact, messages unreadable
    broken.write_bytes(bytes(data))
    with BagPlayback(broken) as pb, pytest.raises(InputError, match='broken.mcap'):
        list(pb.messages())


def test_unknown_topic_and_offset_past_the_end(bag):
    with pytest.raises(InputError, match='/nope.*it has /camera'):
        BagPlayback(bag, PlaybackOptions(topics=('/nope',)))
    with pytest.raises(InputError, match='past the end'):
        BagPlayback(bag, PlaybackOptions(start_offset=5.0))


# ---- shared-memory sizing for the DDS writer ---------------------------------------------

def test_largest_messages_and_segment_size(bag):
    with BagPlayback(bag) as pb:
        sizes = largest_messages(pb)
    # 64x48 rgb8 = 9,216 bytes of pixels, depth 32FC1 = 12,288, plus header fields
    assert 9216 < sizes[COLOR_TOPIC] < 9216 + 200
    assert 12288 < sizes[DEPTH_TOPIC] < 12288 + 200
    assert shm_segment_bytes(sizes, {}) == 1 << 20  # small bag: the smallest, 1 MiB
    big = {'/camera/color/image_raw': 230_500, '/camera/depth/image_raw': 307_300, '/tf': 200}
    segment = shm_segment_bytes(big, {'/tf': 100})
    assert segment % (1 << 20) == 0
    assert segment >= 2 * (230_500 * 12 + 307_300 * 12 + 200 * 102)
    assert segment < 2 * (230_500 * 12 + 307_300 * 12 + 200 * 102) + (1 << 20)


def test_fastdds_profile_is_xml_with_the_segment():
    import xml.etree.ElementTree as ET

    root = ET.fromstring(fastdds_profile_xml(13 << 20))
    ns = {'f': 'http://www.eprosima.com/XMLSchemas/fastRTPS_Profiles'}
    assert root.find('.//f:segment_size', ns).text == str(13 << 20)
    assert [t.text for t in root.findall('.//f:userTransports/f:transport_id', ns)] == \
        ['bag_player_shm', 'bag_player_udp']
    assert root.find('.//f:participant', ns).get('is_default_profile') == 'true'
    with pytest.raises(InputError):
        fastdds_profile_xml(0)
