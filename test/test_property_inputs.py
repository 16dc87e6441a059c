"""Property tests: hostile sensor messages through the image codec and message converters.

Every generated case must end in a value that satisfies the function's contract or in a
typed ``SpatialLlavaError`` (``InputError``) with a message; any other exception, or a call
that does not return within the hang guard, fails the test. Messages are built as plain
namespaces read by attribute, the way the nodes hand rclpy messages to the converters.
"""

from __future__ import annotations

import math
import signal
from contextlib import contextmanager
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from spatial_llava_ros.errors import InputError, SpatialLlavaError
from spatial_llava_ros.image_codec import (
    DEPTH_ENCODINGS,
    ENCODINGS,
    decode_image,
    depth_to_metres,
    encode_image,
    to_rgb8,
)
from spatial_llava_ros.nodes.conversions import (
    bbox_to_box,
    decode_color,
    decode_depth,
    detections_to_inputs,
    fill_message,
    intrinsics_from_camera_info,
    mark_from_msg,
    ns_to_stamp,
    result_fields,
    stamp_to_ns,
    transform_msg_to_matrix,
)
from spatial_llava_ros.pipeline import FAILURE_CODES, SpatialOutcome
from spatial_llava_ros.queries.nav2 import nav_failure_reason

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
HANG_S = 20  # a call that takes this long on a tiny input is a hang, not slowness

BAD_ENCODINGS = ['', 'RGB8', 'rgb9', 'bayer_rggb8', 'yuv422', '32FC3', '16SC1', '\x00',
                 'rgb8 ', 'мono8']
ENCODING = st.sampled_from(sorted(ENCODINGS) + BAD_ENCODINGS)
FLOATS = st.floats(allow_nan=True, allow_infinity=True, width=64)
HUGE_INTS = st.sampled_from([2**31 - 1, 2**31, 2**32, 10**9, 2**63 - 1, 2**64])


@contextmanager
def no_hang(seconds: int = HANG_S):
    """Fail (TimeoutError) instead of hanging; SIGALRM, main thread only."""
    def boom(signum, frame):
        raise TimeoutError(f'call did not return within {seconds} s')
    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def outcome_of(fn, *args, **kwargs):
    """(value, None) or (None, typed error); anything else propagates and fails the test."""
    with no_hang():
        try:
            return fn(*args, **kwargs), None
        except SpatialLlavaError as exc:
            assert str(exc).strip(), f'{type(exc).__name__} with an empty message'
            return None, exc


def image_msg(data, height, width, encoding, step, is_bigendian=0):
    return SimpleNamespace(data=data, height=height, width=width, encoding=encoding,
                           step=step, is_bigendian=is_bigendian)


@st.composite
def raw_images(draw):
    """Image messages: mostly near-valid (so decoding succeeds often), some wild."""
    encoding = draw(ENCODING)
    dtype, channels = ENCODINGS.get(encoding, (np.dtype(np.uint8), 3))
    if draw(st.booleans()):
        height = draw(st.integers(1, 12))
        width = draw(st.integers(1, 12))
        row = width * channels * dtype.itemsize
        step = row + draw(st.sampled_from([0, 0, 0, 1, 3, -1, -row]))
        size = max(0, step * height + draw(st.sampled_from([0, 0, 0, -1, 5, -step])))
        data = draw(st.binary(min_size=size, max_size=size))
    else:
        height = draw(st.integers(-3, 40) | HUGE_INTS)
        width = draw(st.integers(-3, 40) | HUGE_INTS)
        step = draw(st.integers(-10, 400) | HUGE_INTS)
        data = draw(st.binary(max_size=2000))
    as_array = draw(st.booleans())  # rclpy / rosbags hand out uint8 arrays
    if as_array:
        data = np.frombuffer(data, dtype=np.uint8).copy()
    return image_msg(data, height, width, encoding, step, draw(st.sampled_from([0, 1, 2])))


@FAST
@given(raw_images())
def test_decode_image_returns_the_promised_array_or_input_error(msg):
    arr, err = outcome_of(decode_image, msg.data, msg.height, msg.width, msg.encoding,
                          msg.step, msg.is_bigendian)
    if err is not None:
        assert isinstance(err, InputError)
        return
    dtype, channels = ENCODINGS[msg.encoding]
    want = (msg.height, msg.width) if channels == 1 else (msg.height, msg.width, channels)
    assert arr.shape == want and arr.dtype == dtype
    assert arr.flags.owndata or arr.base is not None  # a copy, not a view of the message


@FAST
@given(raw_images())
def test_decode_color_gives_rgb8_or_input_error(msg):
    rgb, err = outcome_of(decode_color, msg)
    if err is None:
        assert rgb.dtype == np.uint8 and rgb.shape == (msg.height, msg.width, 3)


@FAST
@given(raw_images())
def test_decode_depth_gives_positive_metres_or_nan(msg):
    depth, err = outcome_of(decode_depth, msg)
    if err is None:
        assert msg.encoding in DEPTH_ENCODINGS
        assert depth.dtype == np.float32 and depth.shape == (msg.height, msg.width)
        finite = np.isfinite(depth)
        assert np.all(depth[finite] > 0)
        assert np.all(np.isnan(depth[~finite]))


DEPTH_VALUES = st.floats(allow_nan=True, allow_infinity=True, width=32)


@FAST
@given(hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=9),
                  elements=DEPTH_VALUES),
       st.sampled_from(['32FC1', '64FC1', '16UC1', 'mono16', 'rgb8', 'bogus']))
def test_depth_to_metres_nan_inf_negative_become_nan(arr, encoding):
    if encoding in ('16UC1', 'mono16'):
        arr = np.nan_to_num(arr, nan=0, posinf=0, neginf=0).clip(-5, 70000).astype(np.int32)
    out, err = outcome_of(depth_to_metres, arr, encoding)
    if err is None:
        assert out.ndim == 2 and out.dtype == np.float32
        finite = np.isfinite(out)
        assert np.all(out[finite] > 0) and np.all(np.isnan(out[~finite]))
        assert not np.isinf(out).any()


@FAST
@given(hnp.arrays(st.sampled_from([np.uint8, np.uint16, np.float32, np.int64, np.bool_]),
                  hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=6)),
       st.sampled_from(sorted(ENCODINGS) + ['bogus']))
def test_to_rgb8_and_encode_image_on_any_array(arr, encoding):
    rgb, err = outcome_of(to_rgb8, arr, encoding)
    if err is None:
        assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
        assert rgb.shape[:2] == arr.shape[:2]
    res, err = outcome_of(encode_image, arr, encoding)
    if err is None:
        data, step = res
        back = decode_image(data, arr.shape[0], arr.shape[1], encoding, step)
        assert back.shape[:2] == arr.shape[:2]


@FAST
@given(st.lists(FLOATS, min_size=0, max_size=12), st.integers(-5, 5000) | HUGE_INTS,
       st.integers(-5, 5000) | HUGE_INTS)
def test_camera_info_zero_negative_or_nan_focal_is_input_error(k, width, height):
    intr, err = outcome_of(intrinsics_from_camera_info, k, width, height)
    if err is not None:
        return
    assert len(k) == 9
    assert intr.fx > 0 and intr.fy > 0 and math.isfinite(intr.fx) and math.isfinite(intr.fy)
    assert math.isfinite(intr.cx) and math.isfinite(intr.cy)
    assert intr.width > 0 and intr.height > 0


@pytest.mark.parametrize('fx,fy', [(0.0, 0.0), (-525.0, 525.0), (525.0, -1e-9),
                                   (float('nan'), 525.0), (float('inf'), 525.0)])
def test_camera_info_bad_focal_message_names_the_values(fx, fy):
    k = [fx, 0.0, 320.0, 0.0, fy, 240.0, 0.0, 0.0, 1.0]
    with pytest.raises(InputError, match=r'fx=.*fy='):
        intrinsics_from_camera_info(k, 640, 480)


BOX_FLOATS = st.floats(-1e300, 1e300) | st.sampled_from([math.nan, math.inf, -math.inf])


@FAST
@given(BOX_FLOATS, BOX_FLOATS, BOX_FLOATS, BOX_FLOATS, st.none() | st.integers(0, 100),
       st.none() | st.integers(0, 100))
def test_bbox_to_box_is_ordered_and_clipped_or_input_error(cx, cy, sx, sy, width, height):
    box, err = outcome_of(bbox_to_box, cx, cy, sx, sy, width, height)
    if err is not None:
        return
    x0, y0, x1, y1 = box
    assert all(isinstance(v, int) for v in box)
    assert x0 <= x1 or width is not None  # clipping can invert a box that lies off-image
    if width is not None:
        assert 0 <= x0 and x1 <= width
    if height is not None:
        assert 0 <= y0 and y1 <= height


def test_bbox_to_box_overflowing_finite_box_is_input_error():
    with pytest.raises(InputError):
        bbox_to_box(1.7e308, 0.0, 1.7e308, 0.0, 64, 48)


def _vec(draw, names, values=FLOATS):
    return SimpleNamespace(**{n: draw(values) for n in names})


@st.composite
def mark_msgs(draw):
    return SimpleNamespace(
        id=draw(st.integers(-5, 10**6)),
        box=SimpleNamespace(center=SimpleNamespace(position=_vec(draw, 'xy', BOX_FLOATS)),
                            size_x=draw(BOX_FLOATS), size_y=draw(BOX_FLOATS)),
        anchor=SimpleNamespace(x=draw(st.floats(-1e6, 1e6)), y=draw(st.floats(-1e6, 1e6))),
        has_centroid=draw(st.booleans()), centroid=_vec(draw, 'xyz'),
        pixel_count=draw(st.integers(0, 10**7)), label=draw(st.text(max_size=20)))


@FAST
@given(mark_msgs(), st.integers(1, 64), st.integers(1, 64))
def test_mark_from_msg_never_keeps_a_non_finite_centroid(msg, width, height):
    mark, err = outcome_of(mark_from_msg, msg, width, height)
    if err is None:
        assert mark.centroid is None or np.all(np.isfinite(mark.centroid))
        x0, y0, x1, y1 = mark.box
        assert 0 <= x0 and x1 <= width and 0 <= y0 and y1 <= height


@FAST
@given(st.lists(mark_msgs(), max_size=5), st.integers(1, 64), st.integers(1, 64))
def test_detections_to_inputs_skips_empty_boxes(marks, width, height):
    dets = [SimpleNamespace(bbox=m.box) for m in marks]
    inputs, err = outcome_of(detections_to_inputs, dets, width, height)
    if err is None:
        assert all(x1 > x0 and y1 > y0 for x0, y0, x1, y1 in (d['box'] for d in inputs))


@FAST
@given(st.tuples(FLOATS, FLOATS, FLOATS), st.tuples(FLOATS, FLOATS, FLOATS, FLOATS))
def test_transform_msg_is_rigid_or_input_error(t, q):
    msg = SimpleNamespace(translation=SimpleNamespace(x=t[0], y=t[1], z=t[2]),
                          rotation=SimpleNamespace(x=q[0], y=q[1], z=q[2], w=q[3]))
    m, err = outcome_of(transform_msg_to_matrix, msg)
    if err is None:
        assert np.all(np.isfinite(m))
        rot = m[:3, :3]
        assert np.allclose(rot @ rot.T, np.eye(3), atol=1e-6)


@FAST
@given(st.integers(-(2**62), 2**62))
def test_stamp_round_trip(ns):
    sec, nanosec = ns_to_stamp(ns)
    assert 0 <= nanosec < 10**9
    assert stamp_to_ns(sec, nanosec) == ns


@st.composite
def outcomes(draw):
    out = SpatialOutcome(query=draw(st.text(max_size=50)), action=draw(st.integers(-3, 5)),
                         success=False, target_frame=draw(st.text(max_size=10)))
    if draw(st.booleans()):
        out.fail(draw(st.sampled_from(FAILURE_CODES)), draw(st.text(max_size=40)))
    n = draw(st.integers(0, 4))
    out.ranked = [(i + 1, draw(st.floats(0, 1))) for i in range(n)]
    out.frame_stamp_ns = draw(st.integers(0, 2**62))
    out.box = draw(st.none() | st.tuples(*[st.integers(0, 50)] * 4).map(
        lambda b: (min(b[0], b[2]), min(b[1], b[3]), max(b[0], b[2]), max(b[1], b[3]))))
    return out


@FAST
@given(outcomes(), st.integers(0, 2**62))
def test_result_fields_fill_a_message_shaped_tree(out, now_ns):
    fields, err = outcome_of(result_fields, out, now_ns)
    assert err is None, err  # an outcome must always be publishable
    assert fields['success'] is False and fields['reason'] == out.reason
    assert len(fields['mark_ids']) == len(fields['scores']) == len(out.ranked)

    def tree(d):
        return SimpleNamespace(**{k: tree(v) if isinstance(v, dict) else None
                                  for k, v in d.items()})
    msg = fill_message(tree(fields), fields)
    assert msg.query == out.query and msg.frame_stamp.nanosec < 10**9


@FAST
@given(st.dictionaries(st.from_regex(r'[a-z][a-z_0-9]{0,7}', fullmatch=True), st.integers(),
                       max_size=4))
def test_fill_message_rejects_unknown_fields_by_name(fields):
    msg = SimpleNamespace(known=0)
    res, err = outcome_of(fill_message, msg, fields)
    unknown = [k for k in fields if k != 'known']
    assert (err is not None) == bool(unknown)
    if err is not None:
        assert isinstance(err, InputError) and repr(unknown[0]) in str(err)


@FAST
@given(st.integers(-(2**31), 2**31), st.integers(-(2**31), 2**31), st.text(max_size=30))
def test_nav_failure_reason_is_one_line_for_any_status(status, code, text):
    line = nav_failure_reason(status, code, text.replace('\n', ' '))
    assert line.startswith('nav_failed: Nav2 NavigateToPose finished ')
    assert '\n' not in line


def test_huge_claimed_frame_is_refused_without_allocating():
    """A header claiming 2^31 x 2^31 pixels over 64 bytes of data: InputError, at once."""
    msg = image_msg(b'\x00' * 64, 2**31, 2**31, 'rgb8', 3 * 2**31)
    with pytest.raises(InputError, match=r'image data has 64 bytes, expected step'):
        decode_color(msg)


def test_large_real_frame_decodes():
    """A 4096x3072 rgb8 frame (36 MiB) decodes to the same pixels."""
    rgb = np.random.default_rng(0).integers(0, 255, (3072, 4096, 3), dtype=np.uint8)
    data, step = encode_image(rgb, 'rgb8')
    out, err = outcome_of(decode_color, image_msg(data, 3072, 4096, 'rgb8', step))
    assert err is None and np.array_equal(out, rgb)
