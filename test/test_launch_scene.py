"""The synthetic scene that test_launch_bringup.py feeds to the ROS graph, and the ground-
truth check it applies (goal within 5 cm of the stand-off point from the true object
surface), run here on the ROS-free path so the criterion is known to hold everywhere."""

from __future__ import annotations

import math

import numpy as np
import pytest

from spatial_llava_ros.geometry.camera import intrinsics_from_fov, masked_centroid
from spatial_llava_ros.geometry.goals import navigation_goal
from spatial_llava_ros.geometry.transforms import (
    compose,
    make_transform,
    quaternion_from_yaw,
    transform_points,
)
from spatial_llava_ros.pipeline import (
    NAVIGATE,
    FrameRecord,
    PipelineConfig,
    QueryRequest,
    TransformTable,
    resolve_query,
)
from spatial_llava_ros.scene.types import SceneObject

MAP, BASE, LINK, OPTICAL = 'map', 'base_link', 'camera_link', 'camera_color_optical_frame'
ROBOT_XY, ROBOT_YAW = (0.5, -0.3), 0.1
CAMERA_HEIGHT, CAMERA_PITCH = 1.0, math.radians(15.0)  # pitched down: no wall / ceiling marks
SIZE = (160, 120)
STANDOFF = 0.8
TOLERANCE = 0.05  # metres: the "goal within 5 cm of the expected stand-off point"
LINK_FROM_OPTICAL = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


def scene_objects() -> list[SceneObject]:
    return [
        SceneObject(1, 'box', 'red', (200, 35, 35), np.array([3.0, 0.6, 0.2]),
                    np.array([0.5, 0.4, 0.4])),
        SceneObject(2, 'box', 'blue', (40, 70, 190), np.array([3.2, -0.9, 0.25]),
                    np.array([0.5, 0.5, 0.5])),
        SceneObject(3, 'box', 'green', (40, 150, 60), np.array([2.6, -0.1, 0.15]),
                    np.array([0.4, 0.4, 0.3]), yaw=0.3),
    ]


def scene_transforms() -> dict[tuple[str, str], np.ndarray]:
    """parent -> child transforms as the robot's tf tree would publish them."""
    c, s = math.cos(CAMERA_PITCH), math.sin(CAMERA_PITCH)
    pitch_down = np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])
    return {
        (MAP, BASE): make_transform([*ROBOT_XY, 0.0], quaternion_from_yaw(ROBOT_YAW)),
        (BASE, LINK): make_transform([0.0, 0.0, CAMERA_HEIGHT], pitch_down),
        (LINK, OPTICAL): make_transform([0.0, 0.0, 0.0], LINK_FROM_OPTICAL),
    }


def transform_table() -> TransformTable:
    table = TransformTable()
    for (parent, child), m in scene_transforms().items():
        table.add(parent, child, m)
    return table


def render_scene(stamp_ns: int = 0):
    """The frame (core Frame) seen by the robot's camera."""
    from spatial_llava_ros.scene.render import Room, render_frame

    tf = scene_transforms()
    map_from_optical = compose(tf[(MAP, BASE)], tf[(BASE, LINK)], tf[(LINK, OPTICAL)])
    room = Room(x_min=-2.0, x_max=5.0, y_min=-6.0, y_max=6.0)
    return render_frame(scene_objects(), map_from_optical, intrinsics_from_fov(*SIZE, 69.0),
                        room, stamp_ns=stamp_ns)


def object_in_box(frame, box) -> int:
    """Ground truth: the instance covering most of ``box`` (0 = background)."""
    x0, y0, x1, y1 = (int(v) for v in box)
    ids, counts = np.unique(frame.instance_mask[y0:y1, x0:x1], return_counts=True)
    return int(ids[np.argmax(counts)])


def expected_goal(frame, instance_id: int, standoff: float = STANDOFF) -> np.ndarray:
    """Stand-off point from the TRUE visible surface of ``instance_id`` (GT mask + depth)."""
    centroid = masked_centroid(frame.instance_mask == instance_id, frame.depth,
                               frame.intrinsics, trim=0.1)
    target = transform_points(frame.camera_pose, centroid)
    return navigation_goal(target, ROBOT_XY, standoff, MAP).position


marks_engine = pytest.importorskip('spatial_llava_ros.marks.engine')


@pytest.fixture(scope='module')
def frame():
    return render_scene(stamp_ns=1_000_000_000)


@pytest.fixture(scope='module')
def record(frame):
    engine = marks_engine.MarkEngine(marks_engine.MarkerConfig(min_area=20))
    marked = engine.process(frame.rgb, frame.depth, frame.intrinsics, stamp_ns=frame.stamp_ns)
    return FrameRecord.from_marked_frame(marked, OPTICAL)


def test_every_mark_is_an_object(frame, record):
    assert len(record.marks) == 3, [m.to_dict() for m in record.marks]
    assert sorted(object_in_box(frame, m.box) for m in record.marks) == [1, 2, 3]


def test_every_mark_gives_a_goal_within_tolerance_of_ground_truth(frame, record):
    """Whichever mark a model picks, the goal meets the launch test's 5 cm criterion."""

    class PickMark:  # the pipeline's resolver contract, answering one given mark
        def __init__(self, mark_id):
            self.mark_id = mark_id

        def score(self, image, mark_ids, query):
            from spatial_llava_ros.model.resolver import Resolution

            scores = {m: (1.0 if m == self.mark_id else 0.0) for m in mark_ids}
            return Resolution(query, self.mark_id, 1.0, scores,
                              sorted(scores.items(), key=lambda kv: -kv[1]), False)

    pytest.importorskip('spatial_llava_ros.model.resolver')
    errors = []
    for mark in record.marks:
        out = resolve_query(QueryRequest('the box', NAVIGATE), record, PickMark(mark.mark_id),
                            transform_table(), PipelineConfig(standoff=STANDOFF),
                            frame.stamp_ns)
        assert out.success, out.reason
        truth = expected_goal(frame, object_in_box(frame, mark.box))
        errors.append(float(np.linalg.norm(out.goal.position - truth)))
    assert max(errors) < TOLERANCE, errors


def test_without_depth_the_scene_still_has_marks_but_no_centroids(frame):
    """What test_5_target_without_depth relies on: an all-NaN depth image still gives marks
    (colour proposals), none of them with a 3D centroid."""
    nan_depth = np.full(frame.depth.shape, np.nan, np.float32)
    marked = marks_engine.MarkEngine(marks_engine.MarkerConfig(min_area=20)).process(
        frame.rgb, nan_depth, frame.intrinsics, stamp_ns=frame.stamp_ns)
    assert marked.marks and all(m.centroid is None for m in marked.marks)
