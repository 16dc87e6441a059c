"""The marker node in-process with real rclpy (skipped without ROS 2): depth mode, colour-only
mode, stale frames dropped, and detector boxes with labels becoming marks."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip('rclpy', reason='needs ROS 2 (rclpy)')
pytest.importorskip('spatial_llava_ros.msg', reason='the generated interfaces are missing: '
                    'colcon build the package first')
pytest.importorskip('message_filters', reason='needs message_filters')

from rclpy.executors import MultiThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402

from spatial_llava_ros.image_codec import encode_image  # noqa: E402
from spatial_llava_ros.msg import MarkArray  # noqa: E402
from spatial_llava_ros.nodes.conversions import (  # noqa: E402
    box_to_bbox_fields,
    decode_color,
    fill_message,
    ns_to_stamp,
    rgb_image_fields,
    stamp_to_ns,
)
from spatial_llava_ros.nodes.marker_node import MarkerNode  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import test_launch_scene as scene  # noqa: E402

NAMESPACE = 'marker_test'


@pytest.fixture(scope='module')
def frame():
    return scene.render_scene()


def _run(frame, params: dict, *, depth=True, age_s=0.0, detections=None, frames=10):
    """Start a MarkerNode, publish ``frames`` camera frames, return what it published."""
    context = rclpy.Context()
    rclpy.init(context=context)
    node = MarkerNode(context=context, namespace=NAMESPACE, parameter_overrides=[
        Parameter(k, value=v) for k, v in params.items()])
    cam = rclpy.create_node('marker_test_camera', context=context, namespace=NAMESPACE)
    marks, images = [], []
    cam.create_subscription(MarkArray, 'marks', marks.append, 10)
    cam.create_subscription(Image, 'marked_image', images.append, 10)
    pubs = {n: cam.create_publisher(t, n, 10) for n, t in
            (('image', Image), ('depth', Image), ('camera_info', CameraInfo))}
    det_pub = None
    if detections is not None:
        from vision_msgs.msg import Detection2DArray

        det_pub = cam.create_publisher(Detection2DArray, 'detections', 10)
    executor = MultiThreadedExecutor(num_threads=3, context=context)
    executor.add_node(node)
    executor.add_node(cam)
    threading.Thread(target=executor.spin, daemon=True).start()
    sent = []
    try:
        k = frame.intrinsics
        for _ in range(frames):
            stamp_ns = cam.get_clock().now().nanoseconds - int(age_s * 1e9)
            sec, nanosec = ns_to_stamp(stamp_ns)
            color = fill_message(Image(), rgb_image_fields(frame.rgb))
            data, step = encode_image(frame.depth.astype(np.float32), '32FC1')
            depth_msg = fill_message(Image(), {'height': k.height, 'width': k.width,
                                               'encoding': '32FC1', 'step': step,
                                               'data': data})
            info = CameraInfo()
            info.width, info.height = k.width, k.height
            info.k = [k.fx, 0.0, k.cx, 0.0, k.fy, k.cy, 0.0, 0.0, 1.0]
            for msg in (color, depth_msg, info):
                msg.header.stamp.sec, msg.header.stamp.nanosec = sec, nanosec
                msg.header.frame_id = scene.OPTICAL
            if det_pub is not None:
                det_pub.publish(_detections(detections, color.header))
            pubs['image'].publish(color)
            pubs['camera_info'].publish(info)
            if depth:
                pubs['depth'].publish(depth_msg)
            sent.append(stamp_ns)
            time.sleep(0.4)
        time.sleep(1.0)
        return marks, images, sent, node._dropped_stale
    finally:
        executor.shutdown()
        node.close()
        node.destroy_node()
        cam.destroy_node()
        rclpy.try_shutdown(context=context)


def _detections(boxes, header):
    from vision_msgs.msg import Detection2D, Detection2DArray, ObjectHypothesisWithPose

    out = Detection2DArray()
    out.header = header
    for box, label in boxes:
        det = fill_message(Detection2D(), {'bbox': box_to_bbox_fields(box)})
        hyp = ObjectHypothesisWithPose()
        hyp.hypothesis.class_id, hyp.hypothesis.score = label, 0.9
        det.results = [hyp]
        out.detections.append(det)
    return out


def test_depth_mode_marks_with_centroids_and_the_camera_header(frame):
    marks, images, sent, _ = _run(frame, {'min_area': 20})
    assert marks and images
    last = marks[-1]
    assert last.header.frame_id == scene.OPTICAL
    assert stamp_to_ns(last.header.stamp.sec, last.header.stamp.nanosec) in sent
    assert len(last.marks) == 3 and all(m.has_centroid for m in last.marks)
    assert (last.width, last.height) == (frame.intrinsics.width, frame.intrinsics.height)
    image = next(i for i in images if i.header.stamp == last.header.stamp)
    assert decode_color(image).shape == frame.rgb.shape
    assert not np.array_equal(decode_color(image), frame.rgb)  # numbers are drawn


def test_colour_only_mode_has_no_centroids(frame):
    marks, _, _, _ = _run(frame, {'min_area': 20, 'use_depth': False}, depth=False)
    assert marks and marks[-1].marks
    assert not any(m.has_centroid for m in marks[-1].marks)


def test_stale_frames_are_dropped_not_marked(frame):
    marks, _, _, dropped = _run(frame, {'min_area': 20, 'max_frame_age': 0.5}, age_s=3.0,
                                frames=4)
    assert marks == [] and dropped >= 1


def test_detector_boxes_become_labelled_marks(frame):
    truth = [((int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1), name)
             for iid, name in ((1, 'red_box'), (2, 'blue_box'))
             for ys, xs in [np.nonzero(frame.instance_mask == iid)]]
    marks, _, _, _ = _run(frame, {'min_area': 20, 'use_detections': True,
                                  'proposals': 'detections'}, detections=truth)
    assert marks
    assert sorted(m.label for m in marks[-1].marks) == ['blue_box', 'red_box']
