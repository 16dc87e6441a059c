"""The query -> goal pipeline on real parts: a rendered scene, the marks engine, a tiny
random Spatial-LLaVA checkpoint and tf-like transforms; plus every failure as data."""

from __future__ import annotations

import math

import numpy as np
import pytest
from test_launch_scene import scene_objects  # shared scene of the pipeline and launch tests

from spatial_llava_ros.geometry.camera import intrinsics_from_fov
from spatial_llava_ros.geometry.transforms import (
    compose,
    make_transform,
    matrix_to_quaternion,
    quaternion_from_yaw,
    transform_points,
)
from spatial_llava_ros.pipeline import (
    ABSTAIN,
    BAD_QUERY,
    MANIPULATE,
    NAVIGATE,
    NO_DEPTH,
    NO_FRAME,
    NO_MARKS,
    NO_TRANSFORM,
    STALE_FRAME,
    FrameBuffer,
    FrameRecord,
    MarkInfo,
    PipelineConfig,
    QueryRequest,
    TransformTable,
    TransformUnavailableError,
    resolve_query,
)
from spatial_llava_ros.scene.types import SceneObject

marks_engine = pytest.importorskip('spatial_llava_ros.marks.engine')
render = pytest.importorskip('spatial_llava_ros.scene.render')

# camera optical axes in the base frame (REP 103): z forward = base x, x right = -base y,
# y down = -base z
BASE_FROM_OPTICAL_ROT = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
CAMERA_HEIGHT = 1.0
ROBOT_XY = (0.5, -0.3)
ROBOT_YAW = 0.1
STAMP = 5_000_000_000


def _objects() -> list[SceneObject]:
    return scene_objects()  # the same three boxes the launch test's camera sees


def _tf() -> TransformTable:
    table = TransformTable()
    table.add('map', 'base_link', make_transform([*ROBOT_XY, 0.0], quaternion_from_yaw(ROBOT_YAW)))
    table.add('base_link', 'camera_optical',
              make_transform([0.0, 0.0, CAMERA_HEIGHT], BASE_FROM_OPTICAL_ROT))
    return table


@pytest.fixture(scope='module')
def scene():
    tf = _tf()
    map_from_camera = tf.lookup('map', 'camera_optical')
    k = intrinsics_from_fov(160, 120, 69.0)
    frame = render.render_frame(_objects(), map_from_camera, k, stamp_ns=STAMP)
    return frame, tf


@pytest.fixture(scope='module')
def marked(scene):
    frame, _ = scene
    engine = marks_engine.MarkEngine(marks_engine.MarkerConfig(min_area=20))
    return engine.process(frame.rgb, frame.depth, frame.intrinsics, stamp_ns=frame.stamp_ns)


def _majority_instance(frame, mask) -> int:
    ids, counts = np.unique(frame.instance_mask[mask], return_counts=True)
    return int(ids[np.argmax(counts)])


@pytest.fixture(scope='module')
def object_record(scene, marked) -> FrameRecord:
    """The frame with only the marks that lie on objects (the engine may also mark wall or
    ceiling patches; the random tiny model could pick one, which says nothing about geometry)."""
    frame, _ = scene
    on_objects = [m for m in marked.marks if _majority_instance(frame, m.mask) > 0]
    assert len(on_objects) >= 2, [m.to_dict() for m in marked.marks]
    return FrameRecord(marked.stamp_ns, 'camera_optical', marked.image, on_objects)


@pytest.fixture(scope='module')
def resolver(tmp_path_factory):
    import torch

    torch.set_num_threads(1)
    tiny = pytest.importorskip('spatial_llava_ros.model.tiny')
    from spatial_llava_ros.model.resolver import Resolver

    path = tiny.make_tiny_model(tmp_path_factory.mktemp('tiny'), seed=0)
    return Resolver.from_pretrained(path, device='cpu')


def test_every_object_mark_centroid_lies_in_its_object(scene, object_record):
    frame, tf = scene
    objects = {o.instance_id: o for o in _objects()}
    map_from_cam = tf.lookup('map', 'camera_optical')
    for mark in object_record.marks:
        obj = objects[_majority_instance(frame, mark.mask)]
        assert obj.contains(transform_points(map_from_cam, mark.centroid)[None], margin=0.05)[0]


def test_located_target_lies_in_the_chosen_object_and_goal_is_at_standoff(scene, object_record,
                                                                          resolver):
    frame, tf = scene
    record = object_record
    config = PipelineConfig(standoff=0.7, max_frame_age=1.0)
    out = resolve_query(QueryRequest('the red box left of the blue box', NAVIGATE), record,
                        resolver, tf, config, now_ns=STAMP + 200_000_000)
    assert out.success, out.reason
    assert out.code == '' and out.reason == ''
    assert out.frame_age == pytest.approx(0.2)
    assert out.mark_id in record.mark_ids
    probs = [p for _, p in out.ranked]
    assert sum(probs) == pytest.approx(1.0, abs=1e-4) and probs == sorted(probs, reverse=True)
    assert out.confidence == pytest.approx(probs[0])
    # ground truth: the object under most of the chosen mark's mask contains the target point
    mask = record.mark(out.mark_id).mask
    obj = {o.instance_id: o for o in _objects()}[_majority_instance(frame, mask)]
    np.testing.assert_allclose(out.target_camera, record.mark(out.mark_id).centroid)
    assert obj.contains(out.target_world[None], margin=0.05)[0]
    # the camera point maps to the world point with the tf chain
    np.testing.assert_allclose(
        transform_points(tf.lookup('map', 'camera_optical'), out.target_camera),
        out.target_world, atol=1e-9)
    # goal: on the floor, 0.7 m before the target on the line from the robot, facing it
    goal = out.goal
    assert goal.frame_id == 'map' and goal.position[2] == 0.0
    to_target = out.target_world[:2] - goal.position[:2]
    assert np.linalg.norm(to_target) == pytest.approx(0.7)
    from_robot = out.target_world[:2] - np.array(ROBOT_XY)
    cross = to_target[0] * from_robot[1] - to_target[1] * from_robot[0]
    assert cross == pytest.approx(0.0, abs=1e-9)  # collinear
    assert goal.yaw == pytest.approx(math.atan2(to_target[1], to_target[0]))
    x0, y0, x1, y1 = out.box
    assert mask[y0:y1, x0:x1].sum() == mask.sum()
    d = out.to_dict()
    assert d['success'] and d['goal']['frame_id'] == 'map' and d['action'] == 'navigate'


def test_manipulation_pose_is_the_target_point(scene, object_record, resolver):
    _, tf = scene
    record = object_record
    out = resolve_query(QueryRequest('pick up the green box', MANIPULATE), record, resolver, tf,
                        PipelineConfig(), now_ns=STAMP)
    assert out.success, out.reason
    np.testing.assert_allclose(out.goal.position, out.target_world)
    d = out.target_world[:2] - np.array(ROBOT_XY)
    assert out.goal.yaw == pytest.approx(math.atan2(d[1], d[0]))


def test_query_before_any_frame(resolver):
    out = resolve_query(QueryRequest('the chair'), None, resolver, _tf(), PipelineConfig(), 0)
    assert not out.success and out.code == NO_FRAME
    assert out.reason.startswith('no_frame: ')


def test_stale_frame_says_how_old(marked, resolver):
    record = FrameRecord.from_marked_frame(marked, 'camera_optical')
    out = resolve_query(QueryRequest('the red box'), record, resolver, _tf(),
                        PipelineConfig(max_frame_age=0.5), now_ns=STAMP + 2_500_000_000)
    assert not out.success and out.code == STALE_FRAME
    assert '2.50 s old' in out.reason and '0.50 s' in out.reason
    # max_frame_age <= 0 switches the check off
    out = resolve_query(QueryRequest('the red box'), record, resolver, _tf(),
                        PipelineConfig(max_frame_age=0.0), now_ns=STAMP + 10**12)
    assert out.success, out.reason


def test_frame_without_marks(resolver):
    # a camera looking straight down at the empty floor: nothing to mark
    down = make_transform([2.0, 0.0, 1.0], np.array([[0, -1, 0], [-1, 0, 0], [0, 0, -1.0]]))
    blank = render.render_frame([], down, intrinsics_from_fov(160, 120), stamp_ns=STAMP)
    marked = marks_engine.MarkEngine().process(blank.rgb, blank.depth, blank.intrinsics,
                                               stamp_ns=STAMP)
    assert marked.marks == []
    record = FrameRecord.from_marked_frame(marked, 'camera_optical')
    out = resolve_query(QueryRequest('the chair'), record, resolver, _tf(), PipelineConfig(),
                        STAMP)
    assert not out.success and out.code == NO_MARKS


def test_abstain_keeps_the_scores(scene, marked, tmp_path):
    from spatial_llava_ros.model.resolver import Resolver

    record = FrameRecord.from_marked_frame(marked, 'camera_optical')
    strict = Resolver(pytest.importorskip('spatial_llava_ros.model.loading').load_model(
        pytest.importorskip('spatial_llava_ros.model.tiny').make_tiny_model(tmp_path / 't'),
        device='cpu'), abstain_threshold=1.0)
    out = resolve_query(QueryRequest('the red box'), record, strict, _tf(), PipelineConfig(),
                        STAMP)
    assert not out.success and out.code == ABSTAIN
    assert 'threshold' in out.reason
    assert len(out.ranked) == len(record.mark_ids) and out.mark_id == -1


def test_target_without_depth(scene, resolver):
    frame, tf = scene
    # colour-only mode: no depth image, so no mark has a centroid
    marked = marks_engine.MarkEngine(marks_engine.MarkerConfig(min_area=20)).process(
        frame.rgb, None, frame.intrinsics, stamp_ns=STAMP)
    assert marked.marks and all(m.centroid is None for m in marked.marks)
    record = FrameRecord.from_marked_frame(marked, 'camera_optical')
    out = resolve_query(QueryRequest('the red box'), record, resolver, tf, PipelineConfig(),
                        STAMP)
    assert not out.success and out.code == NO_DEPTH
    assert out.mark_id in record.mark_ids and f'mark {out.mark_id}' in out.reason


def test_missing_transform(marked, resolver):
    record = FrameRecord.from_marked_frame(marked, 'camera_optical')
    table = TransformTable()
    table.add('map', 'odom', np.eye(4))
    out = resolve_query(QueryRequest('the red box'), record, resolver, table, PipelineConfig(),
                        STAMP)
    assert not out.success and out.code == NO_TRANSFORM
    assert "'camera_optical'" in out.reason and "'map'" in out.reason
    assert out.target_camera is not None and out.target_world is None


def test_bad_queries(marked, resolver):
    record = FrameRecord.from_marked_frame(marked, 'camera_optical')
    for query in (QueryRequest('   '), QueryRequest('the box', action=7)):
        out = resolve_query(query, record, resolver, _tf(), PipelineConfig(), STAMP)
        assert not out.success and out.code == BAD_QUERY


def test_camera_as_robot_when_no_base_frame(marked, resolver):
    record = FrameRecord.from_marked_frame(marked, 'camera_optical')
    table = TransformTable()
    table.add('map', 'camera_optical', _tf().lookup('map', 'camera_optical'))
    out = resolve_query(QueryRequest('the red box'), record, resolver, table,
                        PipelineConfig(base_frame=''), STAMP)
    assert out.success, out.reason


def test_transform_table_chains_and_inverts():
    table = _tf()
    map_from_cam = table.lookup('map', 'camera_optical')
    expected = compose(make_transform([*ROBOT_XY, 0.0], quaternion_from_yaw(ROBOT_YAW)),
                       make_transform([0, 0, CAMERA_HEIGHT], BASE_FROM_OPTICAL_ROT))
    np.testing.assert_allclose(map_from_cam, expected, atol=1e-12)
    np.testing.assert_allclose(table.lookup('camera_optical', 'map') @ map_from_cam, np.eye(4),
                               atol=1e-12)
    np.testing.assert_allclose(matrix_to_quaternion(map_from_cam[:3, :3]),
                               matrix_to_quaternion(expected[:3, :3]), atol=1e-12)
    with pytest.raises(TransformUnavailableError, match='frames known'):
        table.lookup('map', 'nowhere')


def test_frame_buffer_keeps_the_newest_few_in_order():
    buf = FrameBuffer(size=3)
    assert buf.latest() is None and buf.nearest(0) is None
    image = np.zeros((4, 4, 3), np.uint8)
    for stamp in (10, 20, 30, 40):
        assert buf.add(FrameRecord(stamp, 'cam', image, [MarkInfo(1, (0, 0, 1, 1))]))
    assert len(buf) == 3 and buf.latest().stamp_ns == 40
    assert not buf.add(FrameRecord(35, 'cam', image, []))  # out of order: dropped
    assert buf.nearest(22).stamp_ns == 20 and buf.nearest(0).stamp_ns == 20
    buf.clear()
    assert buf.latest() is None


class _NoModel:
    """A resolver that must not be called: a query naming its mark needs no model."""

    def score(self, *args):
        raise AssertionError('the model was asked about a query that names its mark')


def test_a_query_naming_a_mark_takes_that_mark_without_the_model(object_record):
    record = object_record
    wanted = record.mark_ids[-1]
    for text in (f'mark {wanted}', f'go to mark number {wanted}', f'Mark {wanted}.'):
        out = resolve_query(QueryRequest(text, NAVIGATE), record, _NoModel(), _tf(),
                            PipelineConfig(standoff=0.5), now_ns=STAMP)
        assert out.success, out.reason
        assert out.mark_id == wanted and out.confidence == 1.0
        assert out.ranked == [(wanted, 1.0)]
        np.testing.assert_allclose(out.target_camera, record.mark(wanted).centroid)
    absent = max(record.mark_ids) + 5
    out = resolve_query(QueryRequest(f'go to mark {absent}'), record, _NoModel(), _tf(),
                        PipelineConfig(), now_ns=STAMP)
    assert not out.success and out.code == BAD_QUERY
    assert f'names mark {absent}' in out.reason and str(sorted(record.mark_ids)) in out.reason
    # a mark used as a landmark is still a question for the model
    with pytest.raises(AssertionError, match='the model was asked'):
        resolve_query(QueryRequest(f'the box left of mark {wanted}'), record, _NoModel(),
                      _tf(), PipelineConfig(), now_ns=STAMP)
