"""Message fields <-> core types, with no ROS import.

The nodes pass message *fields* (or messages, read by attribute) to these functions and
fill messages from the plain dicts they return with ``fill_message``, so every conversion
is tested on machines without ROS 2. Images go through ``spatial_llava_ros.image_codec``
(no cv_bridge needed, same errors everywhere).
"""

from __future__ import annotations

import array
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from spatial_llava_ros.camera_types import CameraIntrinsics
from spatial_llava_ros.errors import InputError
from spatial_llava_ros.geometry.camera import validate_intrinsics
from spatial_llava_ros.geometry.transforms import make_transform
from spatial_llava_ros.image_codec import decode_image, depth_to_metres, encode_image, to_rgb8
from spatial_llava_ros.pipeline import MarkInfo, SpatialOutcome

NS_PER_S = 1_000_000_000


def stamp_to_ns(sec: int, nanosec: int) -> int:
    """builtin_interfaces/Time fields -> integer nanoseconds."""
    return int(sec) * NS_PER_S + int(nanosec)


def ns_to_stamp(ns: int) -> tuple[int, int]:
    """Integer nanoseconds -> (sec, nanosec) with 0 <= nanosec < 1e9."""
    sec, nanosec = divmod(int(ns), NS_PER_S)
    return int(sec), int(nanosec)


def intrinsics_from_camera_info(k: Sequence[float], width: int, height: int) -> CameraIntrinsics:
    """sensor_msgs/CameraInfo K (row-major 3x3) and size -> CameraIntrinsics.

    An uncalibrated camera publishes K = 0, which is an InputError naming the values.
    Distortion is not modelled: use the rectified image topics (image_rect*).
    """
    kk = np.asarray(k, dtype=np.float64).ravel()
    if kk.shape != (9,):
        raise InputError(f'CameraInfo K must have 9 values, got {kk.size}')
    intrinsics = CameraIntrinsics(float(kk[0]), float(kk[4]), float(kk[2]), float(kk[5]),
                                  int(width), int(height))
    validate_intrinsics(intrinsics)
    return intrinsics


def decode_color(msg: Any) -> np.ndarray:
    """sensor_msgs/Image (any colour or grey encoding) -> (H, W, 3) uint8 RGB."""
    arr = decode_image(msg.data, msg.height, msg.width, msg.encoding, msg.step,
                       msg.is_bigendian)
    return to_rgb8(arr, msg.encoding)


def decode_depth(msg: Any) -> np.ndarray:
    """sensor_msgs/Image depth (16UC1 mm or 32FC1 m) -> (H, W) float32 metres, NaN invalid."""
    arr = decode_image(msg.data, msg.height, msg.width, msg.encoding, msg.step,
                       msg.is_bigendian)
    return depth_to_metres(arr, msg.encoding)


def rgb_image_fields(rgb: np.ndarray) -> dict:
    """(H, W, 3) uint8 RGB -> the data fields of a sensor_msgs/Image (rgb8).

    ``data`` is an ``array('B')``: rclpy's uint8[] setter takes it without a per-byte check.
    """
    data, step = encode_image(rgb, 'rgb8')
    return {'height': int(rgb.shape[0]), 'width': int(rgb.shape[1]), 'encoding': 'rgb8',
            'is_bigendian': 0, 'step': int(step), 'data': array.array('B', data)}


def box_to_bbox_fields(box: Sequence[int]) -> dict:
    """(x_min, y_min, x_max, y_max), max exclusive -> vision_msgs/BoundingBox2D fields."""
    x0, y0, x1, y1 = (float(v) for v in box)
    if x1 < x0 or y1 < y0:
        raise InputError(f'box must have x_min <= x_max and y_min <= y_max, got {list(box)}')
    return {'center': {'position': {'x': (x0 + x1) / 2.0, 'y': (y0 + y1) / 2.0}, 'theta': 0.0},
            'size_x': x1 - x0, 'size_y': y1 - y0}


def bbox_to_box(cx: float, cy: float, size_x: float, size_y: float,
                width: int | None = None, height: int | None = None) -> tuple[int, int, int, int]:
    """vision_msgs/BoundingBox2D (axis-aligned) -> integer (x_min, y_min, x_max, y_max).

    Rounded outwards to whole pixels and clipped to the image when its size is given.
    """
    vals = (cx, cy, size_x, size_y)
    if not all(math.isfinite(v) for v in vals) or size_x < 0 or size_y < 0:
        raise InputError(f'bad bounding box: center ({cx}, {cy}), size {size_x} x {size_y}')
    edges = (cx - size_x / 2.0, cy - size_y / 2.0, cx + size_x / 2.0, cy + size_y / 2.0)
    if not all(math.isfinite(v) for v in edges):  # finite centre + size can still overflow
        raise InputError(f'bounding box edges overflow: center ({cx}, {cy}), '
                         f'size {size_x} x {size_y}')
    x0, y0 = math.floor(edges[0]), math.floor(edges[1])
    x1, y1 = math.ceil(edges[2]), math.ceil(edges[3])
    if width is not None:
        x0, x1 = max(0, x0), min(int(width), x1)
    if height is not None:
        y0, y1 = max(0, y0), min(int(height), y1)
    return int(x0), int(y0), int(x1), int(y1)


def mark_fields(mark: Any) -> dict:
    """A ``marks.types.Mark`` (or MarkInfo) -> spatial_llava_ros/Mark fields."""
    has = mark.centroid is not None
    c = np.asarray(mark.centroid, dtype=np.float64) if has else np.zeros(3)
    return {
        'id': int(mark.mark_id),
        'box': box_to_bbox_fields(mark.box),
        'anchor': {'x': float(mark.anchor[0]), 'y': float(mark.anchor[1])},
        'centroid': {'x': float(c[0]), 'y': float(c[1]), 'z': float(c[2])},
        'has_centroid': bool(has),
        'pixel_count': int(mark.pixel_count),
        'label': str(getattr(mark, 'label', '') or ''),
    }


def mark_from_msg(msg: Any, width: int | None = None, height: int | None = None) -> MarkInfo:
    """A spatial_llava_ros/Mark message (read by attribute) -> MarkInfo."""
    box = bbox_to_box(msg.box.center.position.x, msg.box.center.position.y, msg.box.size_x,
                      msg.box.size_y, width, height)
    centroid = None
    if msg.has_centroid:
        centroid = np.array([msg.centroid.x, msg.centroid.y, msg.centroid.z], dtype=np.float64)
        if not np.all(np.isfinite(centroid)):
            centroid = None
    return MarkInfo(int(msg.id), box, (int(round(msg.anchor.x)), int(round(msg.anchor.y))),
                    int(msg.pixel_count), centroid, str(msg.label))


def transform_msg_to_matrix(transform: Any) -> np.ndarray:
    """geometry_msgs/Transform (read by attribute) -> 4x4 ``parent_T_child``."""
    t, r = transform.translation, transform.rotation
    return make_transform([t.x, t.y, t.z], [r.x, r.y, r.z, r.w])


def detections_to_inputs(detections: Iterable[Any], width: int, height: int) -> list[dict]:
    """vision_msgs/Detection2D list -> the marks engine's detection dicts (box, label, score).

    The label and score are those of the best hypothesis (``results[i].hypothesis``);
    empty or fully outside boxes are skipped: a detector's junk must not become a mark.
    """
    out = []
    for det in detections:
        b = det.bbox
        x0, y0, x1, y1 = bbox_to_box(b.center.position.x, b.center.position.y, b.size_x,
                                     b.size_y, width, height)
        if x1 <= x0 or y1 <= y0:
            continue
        label, score = None, 1.0
        hyps = [r.hypothesis for r in getattr(det, 'results', [])]
        if hyps:
            best = max(hyps, key=lambda h: h.score)
            label, score = (str(best.class_id) or None), float(best.score)
        out.append({'box': (x0, y0, x1, y1), 'label': label, 'score': score})
    return out


def _point(v: np.ndarray | None) -> dict:
    v = np.zeros(3) if v is None else np.asarray(v, dtype=np.float64)
    return {'x': float(v[0]), 'y': float(v[1]), 'z': float(v[2])}


def result_fields(out: SpatialOutcome, now_ns: int) -> dict:
    """SpatialOutcome -> spatial_llava_ros/SpatialResult fields (stamps as (sec, nanosec))."""
    now = ns_to_stamp(now_ns)
    frame_stamp = ns_to_stamp(out.frame_stamp_ns)
    stamp = {'sec': now[0], 'nanosec': now[1]}
    fstamp = {'sec': frame_stamp[0], 'nanosec': frame_stamp[1]}
    goal_pos = out.goal.position if out.goal is not None else None
    goal_q = out.goal.orientation if out.goal is not None else np.array([0.0, 0.0, 0.0, 1.0])
    box = box_to_bbox_fields(out.box) if out.box is not None else box_to_bbox_fields((0,) * 4)
    ranked = out.ranked
    return {
        'header': {'stamp': stamp, 'frame_id': out.target_frame},
        'query': out.query,
        'action': int(out.action),
        'success': bool(out.success),
        'reason': out.reason,
        'mark_id': int(out.mark_id),
        'confidence': float(out.confidence),
        'mark_ids': [int(i) for i, _ in ranked],
        'scores': [float(p) for _, p in ranked],
        'target_point_camera': {'header': {'stamp': fstamp, 'frame_id': out.camera_frame},
                                'point': _point(out.target_camera)},
        'target_point': {'header': {'stamp': fstamp, 'frame_id': out.target_frame},
                         'point': _point(out.target_world)},
        'goal_pose': pose_fields(goal_pos, goal_q, out.target_frame, out.frame_stamp_ns),
        'box': box,
        'frame_stamp': fstamp,
        'frame_age': float(out.frame_age),
    }


def pose_fields(position: np.ndarray | None, orientation: Sequence[float], frame_id: str,
                stamp_ns: int) -> dict:
    """geometry_msgs/PoseStamped fields."""
    sec, nanosec = ns_to_stamp(stamp_ns)
    q = [float(v) for v in orientation]
    return {'header': {'stamp': {'sec': sec, 'nanosec': nanosec}, 'frame_id': frame_id},
            'pose': {'position': _point(position),
                     'orientation': {'x': q[0], 'y': q[1], 'z': q[2], 'w': q[3]}}}


def fill_message(msg: Any, fields: dict) -> Any:
    """Set ``fields`` on a message, recursing into nested dicts; returns ``msg``.

    Unknown field names raise InputError (a typo must not silently drop data).
    """
    for name, value in fields.items():
        if not hasattr(msg, name):
            raise InputError(f'{type(msg).__name__} has no field {name!r}')
        if isinstance(value, dict):
            fill_message(getattr(msg, name), value)
        else:
            setattr(msg, name, value)
    return msg
