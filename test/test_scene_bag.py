"""Trajectory bags: real ROS 2 encodings via rosbags, read back to the same data."""

import numpy as np
import pytest

from spatial_llava_ros.errors import InputError
from spatial_llava_ros.geometry.transforms import matrix_to_quaternion
from spatial_llava_ros.scene.bag import (
    COLOR_TOPIC,
    DEPTH_TOPIC,
    INFO_TOPIC,
    LINK_T_OPTICAL,
    read_bag,
    tf_chain,
    write_bag,
)
from spatial_llava_ros.scene.trajectory import render_trajectory


@pytest.fixture(scope='module')
def traj():
    return render_trajectory(4, n_frames=6, width=128, height=96)


def test_trajectory_is_smooth_and_starts_at_the_scene(traj):
    assert traj.frames[0] is traj.scene.frame
    stamps = [f.stamp_ns for f in traj.frames]
    assert np.all(np.diff(stamps) == 100_000_000)
    pos = np.array([f.camera_pose[:3, 3] for f in traj.frames])
    steps = np.linalg.norm(np.diff(pos, axis=0), axis=1)
    assert steps.max() < 0.4 and steps.min() > 0
    for frame in traj.frames:
        assert set(np.unique(frame.instance_mask)) - {0} <= \
            {o.instance_id for o in traj.scene.objects}
    # the ground truth for another frame comes from that frame's viewpoint
    from test_scene import _check_expression

    from spatial_llava_ros.scene.generate import describe_view
    from spatial_llava_ros.scene.types import Scene

    for frame in traj.frames:
        exprs, caps = describe_view(traj.scene.objects, frame.camera_pose, 0)
        assert exprs and sum(c.label for c in caps) * 2 == len(caps)
        view = Scene(traj.scene.seed, traj.scene.objects, frame, exprs, caps)
        for expr in exprs:
            _check_expression(view, expr)


@pytest.mark.parametrize('depth_encoding,compress', [('32FC1', False), ('16UC1', True)])
def test_bag_reads_back_with_rosbags(traj, tmp_path, depth_encoding, compress):
    from rosbags.highlevel import AnyReader

    path = write_bag(traj.frames, tmp_path / 'traj.mcap', depth_encoding=depth_encoding,
                     compress=compress)
    assert path.is_file() and path.suffix == '.mcap'
    # raw rosbags view: topics, types, encodings, counts
    with AnyReader([path]) as reader:
        topics = {c.topic: (c.msgtype, c.msgcount) for c in reader.connections}
        assert topics[COLOR_TOPIC] == ('sensor_msgs/msg/Image', 6)
        assert topics[DEPTH_TOPIC] == ('sensor_msgs/msg/Image', 6)
        assert topics[INFO_TOPIC] == ('sensor_msgs/msg/CameraInfo', 6)
        assert topics['/tf'] == ('tf2_msgs/msg/TFMessage', 6)
        assert topics['/tf_static'] == ('tf2_msgs/msg/TFMessage', 1)
        conns = [c for c in reader.connections if c.topic in (DEPTH_TOPIC, INFO_TOPIC)]
        for conn, stamp, raw in reader.messages(connections=conns):
            msg = reader.deserialize(raw, conn.msgtype)
            assert stamp == msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
            if conn.topic == DEPTH_TOPIC:
                assert msg.encoding == depth_encoding
                assert msg.header.frame_id == 'camera_color_optical_frame'
            else:
                k = traj.frames[0].intrinsics
                np.testing.assert_array_equal(msg.k, [k.fx, 0, k.cx, 0, k.fy, k.cy, 0, 0, 1])
                assert (msg.width, msg.height, msg.distortion_model) == (128, 96, 'plumb_bob')
    frames = list(read_bag(path))
    assert len(frames) == 6
    for src, got in zip(traj.frames, frames):
        assert got.stamp_ns == src.stamp_ns
        assert np.array_equal(got.rgb, src.rgb)
        if depth_encoding == '32FC1':
            assert np.array_equal(got.depth, src.depth, equal_nan=True)
        else:
            assert np.array_equal(np.isnan(got.depth), np.isnan(src.depth))
            assert np.nanmax(np.abs(got.depth - src.depth)) <= 0.0005 + 1e-6
        assert got.intrinsics == src.intrinsics
        np.testing.assert_allclose(got.lookup('map'), src.camera_pose, atol=1e-9)
        base = got.lookup('map', 'base_link')
        assert abs(base[2, 3]) < 1e-12 and np.isclose(base[2, 2], 1.0)  # on the floor
        np.testing.assert_allclose(got.lookup('camera_link', 'camera_color_optical_frame'),
                                   LINK_T_OPTICAL, atol=1e-12)


def test_rosbag2_folder_and_overwrite(traj, tmp_path):
    out = write_bag(traj.frames[:2], tmp_path / 'bagdir')
    assert (out / 'metadata.yaml').is_file()
    assert len(list(read_bag(out))) == 2
    with pytest.raises(InputError, match='exists'):
        write_bag(traj.frames[:2], out)
    write_bag(traj.frames[:3], out, overwrite=True)
    assert len(list(read_bag(out))) == 3


def test_same_seed_same_bag_bytes(tmp_path):
    # (the file name is recorded inside the MCAP metadata, so same name, other folders)
    a = write_bag(render_trajectory(9, 3, 64, 48).frames, tmp_path / 'a' / 't.mcap')
    b = write_bag(render_trajectory(9, 3, 64, 48).frames, tmp_path / 'b' / 't.mcap')
    assert a.read_bytes() == b.read_bytes()


def test_bad_input(traj, tmp_path):
    with pytest.raises(InputError, match='no frames'):
        write_bag([], tmp_path / 'x.mcap')
    with pytest.raises(InputError, match='depth encoding'):
        write_bag(traj.frames, tmp_path / 'x.mcap', depth_encoding='rgb8')
    with pytest.raises(InputError, match='increase'):
        write_bag([traj.frames[1], traj.frames[0]], tmp_path / 'x.mcap')
    with pytest.raises(InputError, match='distro'):
        write_bag(traj.frames, tmp_path / 'x.mcap', distro='noetic')
    with pytest.raises(FileNotFoundError):
        list(read_bag(tmp_path / 'missing.mcap'))


def test_quaternions_and_tf_chain():
    # the usual camera_link -> optical quaternion (geometry.transforms, as the bag writes it)
    np.testing.assert_allclose(matrix_to_quaternion(LINK_T_OPTICAL[:3, :3]),
                               [-0.5, 0.5, -0.5, 0.5], atol=1e-12)
    pose = render_trajectory(1, 1, 64, 48).frames[0].camera_pose
    chain = tf_chain(pose)
    composed = chain[('map', 'base_link')] @ chain[('base_link', 'camera_link')] @ \
        chain[('camera_link', 'camera_color_optical_frame')]
    np.testing.assert_allclose(composed, pose, atol=1e-12)


def test_read_bag_pairs_by_header_stamp_in_a_messy_bag(tmp_path):
    """Real drivers: depth a few ms off the colour stamp, logged after it, a dropped depth,
    bgr8 colour, 16UC1 depth, camera_info only once, tf at its own rate."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    from spatial_llava_ros.scene import bag as bagmod

    ts = bagmod._typestore('jazzy')
    frames = render_trajectory(6, n_frames=5, width=48, height=32).frames
    path = tmp_path / 'messy'
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as w:
        c_color = w.add_connection('/cam/rgb', 'sensor_msgs/msg/Image', typestore=ts)
        c_depth = w.add_connection('/cam/depth', 'sensor_msgs/msg/Image', typestore=ts)
        c_info = w.add_connection('/cam/info', 'sensor_msgs/msg/CameraInfo', typestore=ts)
        c_tf = w.add_connection('/tf', 'tf2_msgs/msg/TFMessage', typestore=ts)
        tf_type = ts.types['tf2_msgs/msg/TFMessage']

        def put(conn, stamp, msg):
            w.write(conn, stamp, ts.serialize_cdr(msg, msg.__msgtype__))

        t0 = frames[0].stamp_ns
        put(c_info, t0, bagmod.camera_info_msg(ts, t0, 'cam', frames[0].intrinsics))
        for i, f in enumerate(frames):
            chain = bagmod.tf_chain(f.camera_pose)
            pose = chain[('map', 'base_link')] @ chain[('base_link', 'camera_link')] @ \
                chain[('camera_link', 'camera_color_optical_frame')]
            put(c_tf, f.stamp_ns - 1000, tf_type(transforms=[
                bagmod._transform_msg(ts, f.stamp_ns - 1000, 'map', 'cam', pose)]))
            put(c_color, f.stamp_ns, bagmod._image_msg(ts, f.stamp_ns, 'cam',
                                                       f.rgb[:, :, ::-1].copy(), 'bgr8'))
            if i != 2:  # frame 2 loses its depth image
                d_stamp = f.stamp_ns + 4_000_000
                put(c_depth, d_stamp + 1, bagmod._image_msg(
                    ts, d_stamp, 'cam', bagmod.metres_to_depth16(f.depth), '16UC1'))
    got = list(read_bag(path, color_topic='/cam/rgb', depth_topic='/cam/depth',
                        info_topic='/cam/info', max_skew_ns=10_000_000))
    assert [g.stamp_ns for g in got] == [f.stamp_ns for i, f in enumerate(frames) if i != 2]
    for g in got:
        src = frames[[f.stamp_ns for f in frames].index(g.stamp_ns)]
        assert np.array_equal(g.rgb, src.rgb)
        assert np.nanmax(np.abs(g.depth - src.depth)) <= 0.0005 + 1e-6
        assert g.frame_id == 'cam' and g.intrinsics == src.intrinsics
        np.testing.assert_allclose(g.lookup('map'), src.camera_pose, atol=1e-9)
    with pytest.raises(InputError, match='missing topic'):
        list(read_bag(path))  # default topic names are not in this bag
    # a tighter skew than the depth offset: nothing pairs, nothing is made up
    assert list(read_bag(path, color_topic='/cam/rgb', depth_topic='/cam/depth',
                         info_topic='/cam/info', max_skew_ns=1_000_000)) == []
