"""ROS 2 bags (MCAP) of a camera trajectory, written and read with ``rosbags`` (no ROS needed).

Topics and frames are what a RealSense-style driver plus a robot publish:

- ``/camera/color/image_raw`` sensor_msgs/Image rgb8
- ``/camera/depth/image_raw`` sensor_msgs/Image 32FC1 metres (or 16UC1 millimetres),
  aligned to the colour camera (same frame_id and intrinsics)
- ``/camera/color/camera_info`` sensor_msgs/CameraInfo (plumb_bob, zero distortion)
- ``/tf`` map -> base_link -> camera_link, ``/tf_static`` camera_link ->
  camera_color_optical_frame (REP 103 body frame -> optical frame)
"""

from __future__ import annotations

import bisect
import math
import shutil
import tempfile
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spatial_llava_ros.errors import InputError
from spatial_llava_ros.geometry.transforms import (
    TransformTable,
    TransformUnavailableError,
    matrix_to_quaternion,
    quaternion_to_matrix,
)
from spatial_llava_ros.image_codec import (
    decode_image,
    depth_to_metres,
    encode_image,
    metres_to_depth16,
    to_rgb8,
)
from spatial_llava_ros.scene.types import CameraIntrinsics, Frame

COLOR_TOPIC = '/camera/color/image_raw'
DEPTH_TOPIC = '/camera/depth/image_raw'
INFO_TOPIC = '/camera/color/camera_info'
MAP_FRAME, BASE_FRAME, CAMERA_FRAME = 'map', 'base_link', 'camera_link'
OPTICAL_FRAME = 'camera_color_optical_frame'
DISTROS = ('humble', 'jazzy')

# camera_link (x forward, y left, z up) -> optical (x right, y down, z forward)
LINK_T_OPTICAL = np.array([[0.0, 0.0, 1.0, 0.0], [-1.0, 0.0, 0.0, 0.0],
                           [0.0, -1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])


def _typestore(distro: str):
    from rosbags.typesys import Stores, get_typestore

    if distro not in DISTROS:
        raise InputError(f'unknown ROS 2 distro {distro!r}; choose one of {", ".join(DISTROS)}')
    return get_typestore(Stores.ROS2_HUMBLE if distro == 'humble' else Stores.ROS2_JAZZY)


def tf_chain(camera_pose: np.ndarray) -> dict[tuple[str, str], np.ndarray]:
    """Split world_T_optical into map->base_link (on the floor, yaw only),
    base_link->camera_link (height and tilt) and the fixed camera_link->optical."""
    map_t_link = np.asarray(camera_pose, dtype=np.float64) @ np.linalg.inv(LINK_T_OPTICAL)
    fwd = map_t_link[:3, 0]
    yaw = math.atan2(fwd[1], fwd[0])
    map_t_base = np.eye(4)
    c, s = math.cos(yaw), math.sin(yaw)
    map_t_base[:3, :3] = [[c, -s, 0], [s, c, 0], [0, 0, 1]]
    map_t_base[:2, 3] = map_t_link[:2, 3]
    base_t_link = np.linalg.inv(map_t_base) @ map_t_link
    return {(MAP_FRAME, BASE_FRAME): map_t_base, (BASE_FRAME, CAMERA_FRAME): base_t_link,
            (CAMERA_FRAME, OPTICAL_FRAME): LINK_T_OPTICAL.copy()}


@dataclass
class BagFrame:
    """One colour frame of a bag with its depth, intrinsics and the transforms at its stamp."""

    stamp_ns: int
    rgb: np.ndarray  # (H, W, 3) uint8
    depth: np.ndarray  # (H, W) float32 metres, NaN invalid
    intrinsics: CameraIntrinsics
    frame_id: str
    transforms: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)

    def lookup(self, target: str, source: str | None = None) -> np.ndarray | None:
        """target_T_source (default source: the image's frame) through the tf tree, or None."""
        try:
            return TransformTable.from_edges(self.transforms).lookup(target,
                                                                     source or self.frame_id)
        except TransformUnavailableError:
            return None

    def to_frame(self, target: str = MAP_FRAME) -> Frame:
        """As a core Frame (no instance masks in a bag: all zeros); pose identity if no tf."""
        pose = self.lookup(target)
        return Frame(self.rgb, self.depth, np.zeros(self.depth.shape, np.int32), self.intrinsics,
                     np.eye(4) if pose is None else pose, self.stamp_ns)


def _header(ts, stamp_ns: int, frame_id: str):
    time = ts.types['builtin_interfaces/msg/Time'](sec=stamp_ns // 10**9,
                                                   nanosec=stamp_ns % 10**9)
    return ts.types['std_msgs/msg/Header'](stamp=time, frame_id=frame_id)


def _transform_msg(ts, stamp_ns: int, parent: str, child: str, t: np.ndarray):
    q = matrix_to_quaternion(t[:3, :3])
    types = ts.types
    return types['geometry_msgs/msg/TransformStamped'](
        header=_header(ts, stamp_ns, parent), child_frame_id=child,
        transform=types['geometry_msgs/msg/Transform'](
            translation=types['geometry_msgs/msg/Vector3'](*(float(v) for v in t[:3, 3])),
            rotation=types['geometry_msgs/msg/Quaternion'](*(float(v) for v in q))))


def _image_msg(ts, stamp_ns: int, frame_id: str, array: np.ndarray, encoding: str):
    data, step = encode_image(array, encoding)
    return ts.types['sensor_msgs/msg/Image'](
        header=_header(ts, stamp_ns, frame_id), height=array.shape[0], width=array.shape[1],
        encoding=encoding, is_bigendian=0, step=step, data=np.frombuffer(data, np.uint8))


def camera_info_msg(ts, stamp_ns: int, frame_id: str, k: CameraIntrinsics):
    """A sensor_msgs/CameraInfo of an undistorted pinhole camera."""
    types = ts.types
    return types['sensor_msgs/msg/CameraInfo'](
        header=_header(ts, stamp_ns, frame_id), height=k.height, width=k.width,
        distortion_model='plumb_bob', d=np.zeros(5),
        k=np.array([k.fx, 0, k.cx, 0, k.fy, k.cy, 0, 0, 1], np.float64),
        r=np.eye(3).ravel(),
        p=np.array([k.fx, 0, k.cx, 0, 0, k.fy, k.cy, 0, 0, 0, 1, 0], np.float64),
        binning_x=0, binning_y=0,
        roi=types['sensor_msgs/msg/RegionOfInterest'](x_offset=0, y_offset=0, height=0,
                                                      width=0, do_rectify=False))


def _static_qos() -> list:
    try:
        from rosbags.interfaces import (
            Qos,
            QosDurability,
            QosHistory,
            QosLiveliness,
            QosReliability,
            QosTime,
        )
    except ImportError:  # older rosbags: ros2 bag play --qos-profile-overrides-path instead
        return []
    zero = QosTime(0, 0)
    return [Qos(QosHistory.KEEP_LAST, 1, QosReliability.RELIABLE, QosDurability.TRANSIENT_LOCAL,
                zero, zero, QosLiveliness.AUTOMATIC, zero, False)]


def write_bag(frames: list[Frame], out: str | Path, *, depth_encoding: str = '32FC1',
              distro: str = 'humble', overwrite: bool = False, compress: bool = False) -> Path:
    """Write ``frames`` as a ROS 2 bag. ``out`` ending in .mcap -> one MCAP file (what
    ``ros2 bag play`` and Foxglove open directly); any other path -> a rosbag2 folder with
    metadata.yaml. ``compress`` zstd-compresses MCAP chunks (about 3x smaller, slower to
    write). Returns the path written."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.rosbag2.enums import CompressionFormat, CompressionMode

    if not frames:
        raise InputError('no frames to write')
    if depth_encoding not in ('32FC1', '16UC1'):
        raise InputError(f'depth encoding must be 32FC1 or 16UC1, got {depth_encoding!r}')
    stamps = [f.stamp_ns for f in frames]
    if any(b <= a for a, b in zip(stamps, stamps[1:])):
        raise InputError('frame stamps must increase strictly')
    ts = _typestore(distro)
    out = Path(out)
    single = out.suffix == '.mcap'
    if out.exists():
        if not overwrite:
            raise InputError(f'{out} exists; pass overwrite=True (--force) to replace it')
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix='.bag-', dir=out.parent)) if single else None
    bag_dir = tmp / out.stem if single else out
    try:
        writer = Writer(bag_dir, version=8, storage_plugin=StoragePlugin.MCAP)
        if compress:
            writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
        with writer:
            conns = {
                'tf_static': writer.add_connection('/tf_static', 'tf2_msgs/msg/TFMessage',
                                                   typestore=ts,
                                                   offered_qos_profiles=_static_qos()),
                'tf': writer.add_connection('/tf', 'tf2_msgs/msg/TFMessage', typestore=ts),
                'info': writer.add_connection(INFO_TOPIC, 'sensor_msgs/msg/CameraInfo',
                                              typestore=ts),
                'depth': writer.add_connection(DEPTH_TOPIC, 'sensor_msgs/msg/Image',
                                               typestore=ts),
                'color': writer.add_connection(COLOR_TOPIC, 'sensor_msgs/msg/Image',
                                               typestore=ts),
            }
            tf_type = ts.types['tf2_msgs/msg/TFMessage']

            def put(name: str, stamp: int, msg) -> None:
                writer.write(conns[name], stamp, ts.serialize_cdr(msg, msg.__msgtype__))

            for i, frame in enumerate(frames):
                stamp = int(frame.stamp_ns)
                chain = tf_chain(frame.camera_pose)
                if i == 0:
                    put('tf_static', stamp, tf_type(transforms=[_transform_msg(
                        ts, stamp, CAMERA_FRAME, OPTICAL_FRAME,
                        chain[(CAMERA_FRAME, OPTICAL_FRAME)])]))
                put('tf', stamp, tf_type(transforms=[
                    _transform_msg(ts, stamp, p, c, chain[(p, c)])
                    for p, c in ((MAP_FRAME, BASE_FRAME), (BASE_FRAME, CAMERA_FRAME))]))
                put('info', stamp, camera_info_msg(ts, stamp, OPTICAL_FRAME, frame.intrinsics))
                depth = frame.depth if depth_encoding == '32FC1' else \
                    metres_to_depth16(frame.depth)
                depth = np.nan_to_num(depth, nan=0.0) if depth_encoding == '32FC1' else depth
                put('depth', stamp, _image_msg(ts, stamp, OPTICAL_FRAME, depth.astype(
                    np.float32 if depth_encoding == '32FC1' else np.uint16), depth_encoding))
                put('color', stamp, _image_msg(ts, stamp, OPTICAL_FRAME, frame.rgb, 'rgb8'))
        if single:
            (mcap,) = bag_dir.glob('*.mcap')
            mcap.replace(out)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def _stamp(header) -> int:
    return int(header.stamp.sec) * 10**9 + int(header.stamp.nanosec)


def _intrinsics(info) -> CameraIntrinsics:
    k = np.asarray(info.k, dtype=np.float64)
    return CameraIntrinsics(float(k[0]), float(k[4]), float(k[2]), float(k[5]),
                            int(info.width), int(info.height))


def _nearest(buffer: deque, stamp: int):
    """(stamp, msg) in ``buffer`` nearest to ``stamp``, or None."""
    return min(buffer, key=lambda item: abs(item[0] - stamp), default=None)


def read_bag(path: str | Path, *, color_topic: str = COLOR_TOPIC,
             depth_topic: str = DEPTH_TOPIC, info_topic: str = INFO_TOPIC,
             max_skew_ns: int = 20_000_000, max_pending: int = 64) -> Iterator[BagFrame]:
    """Yield decoded colour frames paired with the depth image nearest in time (within
    ``max_skew_ns``), the nearest camera_info, and the /tf + /tf_static transforms valid at
    their stamp (header stamps, not log times).

    Streams: a colour frame is emitted once a depth image later than its stamp + skew has
    been read (or at the end), so memory stays bounded by ``max_pending`` frames.
    Reads MCAP files, rosbag2 folders and ROS 1 .bag files (via rosbags' AnyReader).
    Colour frames with no depth within the skew are skipped.
    """
    from rosbags.highlevel import AnyReader, AnyReaderError

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f'{path} does not exist')
    static: dict[tuple[str, str], np.ndarray] = {}
    dynamic: dict[tuple[str, str], tuple[list[int], list[np.ndarray]]] = {}
    pending: deque = deque()  # (stamp, colour msg)
    depths: deque = deque()  # (stamp, depth msg), pruned behind the oldest pending frame
    infos: deque = deque(maxlen=8)

    def emit(stamp: int, cmsg) -> BagFrame | None:
        depth_item = _nearest(depths, stamp)
        info_item = _nearest(infos, stamp)
        if depth_item is None or info_item is None or \
                abs(depth_item[0] - stamp) > max_skew_ns:
            return None
        dmsg, info = depth_item[1], info_item[1]
        color = decode_image(cmsg.data, cmsg.height, cmsg.width, cmsg.encoding, cmsg.step,
                             cmsg.is_bigendian)
        dimg = decode_image(dmsg.data, dmsg.height, dmsg.width, dmsg.encoding, dmsg.step,
                            dmsg.is_bigendian)
        transforms = dict(static)
        for key, (stamps, mats) in dynamic.items():  # the latest at or before the frame
            i = bisect.bisect_right(stamps, stamp + max_skew_ns)
            transforms[key] = mats[max(i - 1, 0)]
        return BagFrame(stamp, to_rgb8(color, cmsg.encoding), depth_to_metres(dimg, dmsg.encoding),
                        _intrinsics(info), cmsg.header.frame_id.lstrip('/'), transforms)

    def ready(final: bool) -> Iterator[BagFrame]:
        while pending:
            stamp, cmsg = pending[0]
            latest_depth = depths[-1][0] if depths else None
            settled = latest_depth is not None and latest_depth > stamp + max_skew_ns
            if not (final or settled or len(pending) > max_pending):
                return
            if not infos and not final and len(pending) <= max_pending:
                return
            pending.popleft()
            frame = emit(stamp, cmsg)
            if frame is not None:
                yield frame
            horizon = (pending[0][0] if pending else stamp) - max_skew_ns
            while len(depths) > 1 and depths[0][0] < horizon:
                depths.popleft()

    try:
        with AnyReader([path], default_typestore=_typestore('humble')) as reader:
            topics = {c.topic for c in reader.connections}
            missing = [t for t in (color_topic, depth_topic, info_topic) if t not in topics]
            if missing:
                raise InputError(f'{path}: missing topic(s) {", ".join(missing)}; has '
                                 f'{", ".join(sorted(topics))}')
            wanted = [c for c in reader.connections
                      if c.topic in (color_topic, depth_topic, info_topic, '/tf', '/tf_static')]
            for conn, _, raw in reader.messages(connections=wanted):
                msg = reader.deserialize(raw, conn.msgtype)
                if conn.topic in ('/tf', '/tf_static'):
                    for tr in msg.transforms:
                        t = np.eye(4)
                        r = tr.transform.rotation
                        t[:3, :3] = quaternion_to_matrix((r.x, r.y, r.z, r.w))
                        v = tr.transform.translation
                        t[:3, 3] = (v.x, v.y, v.z)
                        key = (tr.header.frame_id.lstrip('/'), tr.child_frame_id.lstrip('/'))
                        if conn.topic == '/tf_static':
                            static[key] = t
                        else:
                            stamps, mats = dynamic.setdefault(key, ([], []))
                            i = bisect.bisect_right(stamps, _stamp(tr.header))
                            stamps.insert(i, _stamp(tr.header))
                            mats.insert(i, t)
                    continue
                item = (_stamp(msg.header), msg)
                if conn.topic == color_topic:
                    pending.append(item)
                elif conn.topic == depth_topic:
                    depths.append(item)
                else:
                    infos.append(item)
                yield from ready(final=False)
            yield from ready(final=True)
    except AnyReaderError as exc:  # truncated or corrupt file: one line, not a traceback
        raise InputError(f'{path}: cannot read the bag ({exc})') from exc
