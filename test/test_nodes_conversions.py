"""Message fields <-> core types, tested without ROS (messages built by hand as plain
attribute objects with the real field names); with ROS 2 installed, the same helpers
also fill the real generated messages."""

from types import SimpleNamespace as Msg

import numpy as np
import pytest

from spatial_llava_ros.errors import InputError
from spatial_llava_ros.geometry.goals import navigation_goal
from spatial_llava_ros.geometry.transforms import quaternion_from_yaw
from spatial_llava_ros.image_codec import encode_image, metres_to_depth16
from spatial_llava_ros.nodes.conversions import (
    bbox_to_box,
    box_to_bbox_fields,
    decode_color,
    decode_depth,
    detections_to_inputs,
    fill_message,
    intrinsics_from_camera_info,
    mark_fields,
    mark_from_msg,
    ns_to_stamp,
    result_fields,
    rgb_image_fields,
    stamp_to_ns,
    transform_msg_to_matrix,
)
from spatial_llava_ros.pipeline import NAVIGATE, MarkInfo, SpatialOutcome


def _image_msg(array, encoding):
    data, step = encode_image(array, encoding)
    return Msg(data=data, height=array.shape[0], width=array.shape[1], encoding=encoding,
              step=step, is_bigendian=0)


def _nested(d):
    return Msg(**{k: _nested(v) if isinstance(v, dict) else v for k, v in d.items()})


def test_stamps_round_trip():
    assert stamp_to_ns(12, 345) == 12_000_000_345
    assert ns_to_stamp(12_000_000_345) == (12, 345)
    assert ns_to_stamp(0) == (0, 0)
    assert ns_to_stamp(stamp_to_ns(1_700_000_000, 999_999_999)) == (1_700_000_000, 999_999_999)


def test_camera_info_k():
    k = intrinsics_from_camera_info([500.0, 0, 319.5, 0, 510.0, 239.5, 0, 0, 1], 640, 480)
    assert (k.fx, k.fy, k.cx, k.cy, k.width, k.height) == (500.0, 510.0, 319.5, 239.5, 640, 480)
    with pytest.raises(InputError, match='fx'):
        intrinsics_from_camera_info([0.0] * 9, 640, 480)  # an uncalibrated camera
    with pytest.raises(InputError, match='9 values'):
        intrinsics_from_camera_info([1.0] * 4, 640, 480)


def test_decode_colour_and_depth_messages():
    rgb = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    np.testing.assert_array_equal(decode_color(_image_msg(rgb, 'rgb8')), rgb)
    np.testing.assert_array_equal(decode_color(_image_msg(rgb[:, :, ::-1].copy(), 'bgr8')), rgb)
    depth = np.array([[1.0, np.nan], [0.25, 3.5]], np.float32)
    out = decode_depth(_image_msg(metres_to_depth16(depth), '16UC1'))
    np.testing.assert_allclose(out, depth, equal_nan=True)
    out = decode_depth(_image_msg(depth, '32FC1'))
    np.testing.assert_allclose(out, depth, equal_nan=True)
    with pytest.raises(InputError, match='depth encoding'):
        decode_depth(_image_msg(rgb, 'rgb8'))
    fields = rgb_image_fields(rgb)
    assert fields['encoding'] == 'rgb8' and fields['step'] == 15
    np.testing.assert_array_equal(decode_color(Msg(**fields)), rgb)


def test_boxes_round_trip_and_clip():
    fields = box_to_bbox_fields((10, 20, 30, 60))
    assert fields == {'center': {'position': {'x': 20.0, 'y': 40.0}, 'theta': 0.0},
                      'size_x': 20.0, 'size_y': 40.0}
    assert bbox_to_box(20.0, 40.0, 20.0, 40.0) == (10, 20, 30, 60)
    assert bbox_to_box(20.2, 40.0, 20.0, 40.0) == (10, 20, 31, 60)  # rounded outwards
    assert bbox_to_box(5.0, 5.0, 20.0, 20.0, width=8, height=100) == (0, 0, 8, 15)
    with pytest.raises(InputError, match='bad bounding box'):
        bbox_to_box(1.0, 1.0, -2.0, 1.0)
    with pytest.raises(InputError):
        box_to_bbox_fields((5, 5, 1, 1))


def test_mark_fields_round_trip_through_a_message():
    mark = MarkInfo(7, (4, 6, 14, 26), (9, 16), 150, np.array([0.1, -0.2, 2.5]), 'mug')
    msg = _nested(mark_fields(mark))
    back = mark_from_msg(msg, width=640, height=480)
    assert (back.mark_id, back.box, back.anchor, back.pixel_count, back.label) == \
        (7, (4, 6, 14, 26), (9, 16), 150, 'mug')
    np.testing.assert_allclose(back.centroid, [0.1, -0.2, 2.5])
    no_depth = _nested(mark_fields(MarkInfo(2, (0, 0, 4, 4), (1, 1), 16, None)))
    assert no_depth.has_centroid is False and mark_from_msg(no_depth).centroid is None


def test_transform_message_to_matrix():
    q = quaternion_from_yaw(np.pi / 2)
    tf = Msg(translation=Msg(x=1.0, y=2.0, z=0.5), rotation=Msg(x=q[0], y=q[1], z=q[2], w=q[3]))
    m = transform_msg_to_matrix(tf)
    np.testing.assert_allclose(m @ [1, 0, 0, 1], [1.0, 3.0, 0.5, 1.0], atol=1e-12)


def test_detections_become_engine_inputs_with_the_best_label():
    def det(cx, cy, sx, sy, *hyps):
        results = [Msg(hypothesis=Msg(class_id=c, score=p)) for c, p in hyps]
        return Msg(bbox=Msg(center=Msg(position=Msg(x=cx, y=cy), theta=0.0), size_x=sx,
                            size_y=sy), results=results)
    inputs = detections_to_inputs([det(10, 10, 8, 6, ('cup', 0.3), ('mug', 0.9)),
                                   det(-50, -50, 10, 10), det(5, 5, 0, 0),
                                   det(50, 50, 4, 4)], 100, 100)
    assert inputs == [{'box': (6, 7, 14, 13), 'label': 'mug', 'score': 0.9},
                      {'box': (48, 48, 52, 52), 'label': None, 'score': 1.0}]
    from spatial_llava_ros.marks.detections import normalize_detections

    assert [d.label for d in normalize_detections(inputs, (100, 100))] == ['mug', None]


def test_result_fields_fill_a_result_shaped_message():
    goal = navigation_goal([3.0, 4.0, 0.8], [0.0, 0.0], 1.0)
    out = SpatialOutcome('the red box', NAVIGATE, True, mark_id=3, confidence=0.7,
                         ranked=[(3, 0.7), (1, 0.3)], target_camera=np.array([0.1, 0.2, 3.0]),
                         target_world=np.array([3.0, 4.0, 0.8]), goal=goal, box=(1, 2, 11, 22),
                         camera_frame='cam', target_frame='map',
                         frame_stamp_ns=5_000_000_007, frame_age=0.25)
    fields = result_fields(out, now_ns=6_000_000_000)
    assert fields['header'] == {'stamp': {'sec': 6, 'nanosec': 0}, 'frame_id': 'map'}
    assert fields['mark_ids'] == [3, 1] and fields['scores'] == [0.7, 0.3]
    assert fields['frame_stamp'] == {'sec': 5, 'nanosec': 7}
    assert fields['goal_pose']['header']['frame_id'] == 'map'
    assert fields['goal_pose']['pose']['position'] == {'x': 2.4, 'y': 3.2, 'z': 0.0}
    assert fields['target_point_camera']['header']['frame_id'] == 'cam'
    assert fields['box']['size_x'] == 10.0
    msg = _nested(fields)
    fill_message(msg, fields)
    assert msg.goal_pose.pose.orientation.w == pytest.approx(goal.orientation[3])
    with pytest.raises(InputError, match="no field 'confidance'"):
        fill_message(msg, {'confidance': 1.0})
    failed = SpatialOutcome('x', 0, False).fail('no_frame', 'no marked camera frame yet')
    f = result_fields(failed, 0)
    assert f['success'] is False and f['reason'].startswith('no_frame: ')
    assert f['mark_id'] == -1 and f['goal_pose']['pose']['orientation']['w'] == 1.0


def test_fill_real_generated_messages_when_ros_is_installed():
    msg_mod = pytest.importorskip('spatial_llava_ros.msg',
                                  reason='generated interfaces need a colcon-built ROS 2 '
                                         'workspace (rclpy / rosidl)')
    out = SpatialOutcome('q', 0, False).fail('no_frame', 'no marked camera frame yet')
    msg = fill_message(msg_mod.SpatialResult(), result_fields(out, 1))
    assert msg.reason.startswith('no_frame')
    mark = fill_message(msg_mod.Mark(), mark_fields(MarkInfo(1, (0, 0, 2, 2), (1, 1), 4, None)))
    assert mark.id == 1
