"""sensor_msgs/Image encodings: round trips, padding, byte order and bad input."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spatial_llava_ros.errors import InputError
from spatial_llava_ros.image_codec import (
    ENCODINGS,
    decode_image,
    depth_to_metres,
    encode_image,
    metres_to_depth16,
    to_rgb8,
)

RNG = np.random.default_rng(1)
CASES = {
    'rgb8': RNG.integers(0, 256, (3, 5, 3), dtype=np.uint8),
    'bgra8': RNG.integers(0, 256, (3, 5, 4), dtype=np.uint8),
    'mono8': RNG.integers(0, 256, (3, 5), dtype=np.uint8),
    '16UC1': RNG.integers(0, 65536, (3, 5), dtype=np.uint16),
    '32FC1': RNG.uniform(0, 9, (3, 5)).astype(np.float32),
}


@pytest.mark.parametrize('encoding', sorted(CASES))
def test_round_trip(encoding):
    arr = CASES[encoding]
    data, step = encode_image(arr, encoding)
    assert step == arr.shape[1] * arr.itemsize * (arr.shape[2] if arr.ndim == 3 else 1)
    out = decode_image(data, arr.shape[0], arr.shape[1], encoding, step)
    assert out.dtype == arr.dtype
    np.testing.assert_array_equal(out, arr)
    # rosbags hands the payload over as a uint8 array, not bytes
    out2 = decode_image(np.frombuffer(data, np.uint8), arr.shape[0], arr.shape[1], encoding, step)
    np.testing.assert_array_equal(out2, arr)


def test_rclpy_style_payloads():
    import array

    data, step = encode_image(CASES['rgb8'], 'rgb8')
    for payload in (array.array('B', data), bytearray(data), memoryview(data), list(data)):
        out = decode_image(payload, 3, 5, 'rgb8', step)
        np.testing.assert_array_equal(out, CASES['rgb8'])


def test_one_pixel_image():
    data, step = encode_image(np.array([[7]], np.uint16), '16UC1')
    assert (data, step) == (b'\x07\x00', 2)
    assert decode_image(data, 1, 1, '16UC1', 2)[0, 0] == 7


def test_row_padding_and_big_endian():
    # 2x2 16UC1, big-endian, step 6 (2 bytes of padding per row)
    rows = [b'\x01\x00\x00\x02\xff\xff', b'\x00\x03\x10\x00\xee\xee']
    out = decode_image(b''.join(rows), 2, 2, '16UC1', 6, is_bigendian=1)
    np.testing.assert_array_equal(out, [[256, 2], [3, 4096]])
    assert out.dtype == np.uint16 and out.dtype.isnative


def test_decode_errors_name_the_numbers():
    with pytest.raises(InputError, match='step 5 < width 2'):
        decode_image(b'\x00' * 12, 2, 2, 'rgb8', 5)
    with pytest.raises(InputError, match='11 bytes, expected step 6 x height 2 = 12'):
        decode_image(b'\x00' * 11, 2, 2, 'rgb8', 6)
    with pytest.raises(InputError, match='unsupported image encoding'):
        decode_image(b'', 1, 1, 'yuv422_weird', 2)
    with pytest.raises(InputError, match='0x2'):
        decode_image(b'', 2, 0, 'rgb8', 0)


def test_encode_errors():
    with pytest.raises(InputError, match='shape'):
        encode_image(np.zeros((2, 2), np.uint8), 'rgb8')
    with pytest.raises(InputError, match='empty'):
        encode_image(np.zeros((0, 3), np.uint8), 'mono8')
    with pytest.raises(InputError, match='float'):
        encode_image(np.zeros((2, 2), np.float32), '16UC1')


def test_to_rgb8():
    px = np.array([[[10, 20, 30]]], np.uint8)
    np.testing.assert_array_equal(to_rgb8(px, 'rgb8'), px)
    np.testing.assert_array_equal(to_rgb8(px, 'bgr8'), [[[30, 20, 10]]])
    np.testing.assert_array_equal(to_rgb8(px, '8UC3'), [[[30, 20, 10]]])
    np.testing.assert_array_equal(to_rgb8(np.array([[[1, 2, 3, 4]]], np.uint8), 'bgra8'),
                                  [[[3, 2, 1]]])
    np.testing.assert_array_equal(to_rgb8(np.array([[[1, 2, 3, 4]]], np.uint8), 'rgba8'),
                                  [[[1, 2, 3]]])
    np.testing.assert_array_equal(to_rgb8(np.array([[5]], np.uint8), 'mono8'), [[[5, 5, 5]]])
    np.testing.assert_array_equal(to_rgb8(np.array([[0, 1000]], np.uint16), 'mono16'),
                                  [[[0, 0, 0], [255, 255, 255]]])
    np.testing.assert_array_equal(to_rgb8(np.zeros((1, 1), np.uint16), 'mono16'), [[[0, 0, 0]]])
    with pytest.raises(InputError, match='cannot convert'):
        to_rgb8(px, '32FC1')
    with pytest.raises(InputError, match='empty'):
        to_rgb8(np.zeros((0, 0, 3), np.uint8), 'rgb8')
    with pytest.raises(InputError, match='shape'):
        to_rgb8(np.zeros((2, 2), np.uint8), 'rgb8')


def test_depth_to_metres():
    mm = np.array([[0, 1000, 1500]], np.uint16)
    m = depth_to_metres(mm, '16UC1')
    assert m.dtype == np.float32
    assert np.isnan(m[0, 0]) and m[0, 1] == 1.0 and m[0, 2] == 1.5
    f = np.array([[0.0, np.inf, np.nan, -1.0, 2.25]], np.float32)
    out = depth_to_metres(f, '32FC1')
    assert np.isnan(out[0, :4]).all() and out[0, 4] == 2.25
    np.testing.assert_array_equal(metres_to_depth16(out), [[0, 0, 0, 0, 2250]])
    with pytest.raises(InputError, match='unsupported depth'):
        depth_to_metres(mm, 'rgb8')
    with pytest.raises(InputError, match='empty'):
        depth_to_metres(np.zeros((0, 4), np.float32), '32FC1')
    with pytest.raises(InputError, match='integer'):
        depth_to_metres(f, '16UC1')


@settings(max_examples=60, deadline=None)
@given(encoding=st.sampled_from(sorted(ENCODINGS)), h=st.integers(1, 5), w=st.integers(1, 5),
       pad=st.integers(0, 7), big=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_decode_any_layout(encoding, h, w, pad, big, seed):
    """Any encoding, size, row padding and byte order decodes to the pixels that were packed."""
    dtype, channels = ENCODINGS[encoding]
    rng = np.random.default_rng(seed)
    shape = (h, w) if channels == 1 else (h, w, channels)
    if dtype.kind == 'f':
        arr = rng.uniform(-5, 5, shape).astype(dtype)
    else:
        arr = rng.integers(0, np.iinfo(dtype).max, shape, endpoint=True).astype(dtype)
    packed = arr.astype(dtype.newbyteorder('>' if big else '<'))
    row = packed.reshape(h, -1).view(np.uint8).reshape(h, -1)
    data = np.concatenate([row, np.full((h, pad), 0xAB, np.uint8)], axis=1).tobytes()
    out = decode_image(data, h, w, encoding, row.shape[1] + pad, is_bigendian=int(big))
    np.testing.assert_array_equal(out, arr)
