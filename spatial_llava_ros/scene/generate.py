"""Deterministic indoor scenes from a seed: room, objects on the floor or a table, camera.

Layout is sampled inside the camera's field of view (so objects are visible), rendered,
and objects that end up tiny or mostly hidden are dropped and the frame re-rendered, so
every object in ``Scene.objects`` is visible in ``Scene.frame``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from spatial_llava_ros.errors import InputError
from spatial_llava_ros.geometry.camera import intrinsics_from_fov
from spatial_llava_ros.scene.catalog import CATEGORIES, CATEGORY_SPECS, COLORS
from spatial_llava_ros.scene.expressions import (
    candidate_expressions,
    object_views,
    select_expressions,
    vsr_captions,
)
from spatial_llava_ros.scene.render import Room, render_with_stats
from spatial_llava_ros.scene.types import (
    CameraIntrinsics,
    Expression,
    Frame,
    Scene,
    SceneObject,
    VsrCaption,
)

MIN_OBJECTS, MAX_OBJECTS = 3, 12
_FLOORS = ((170, 140, 105), (150, 150, 150), (120, 95, 70), (190, 175, 150), (95, 110, 130))
_WALLS = ((215, 210, 200), (200, 215, 225), (225, 215, 190), (190, 190, 195), (220, 200, 200))
# categories that usually face the camera (their local +x is their front)
_FACING = ('chair', 'sofa', 'laptop', 'cabinet')


def camera_pose(position: np.ndarray, yaw: float, pitch: float) -> np.ndarray:
    """world_T_camera_optical for a camera at ``position`` looking along world ``yaw``
    (0 = +x, left positive) and tilted down by ``pitch`` radians."""
    cp, sp, cy, sy = math.cos(pitch), math.sin(pitch), math.cos(yaw), math.sin(yaw)
    forward = np.array([cp * cy, cp * sy, -sp])
    right = np.array([sy, -cy, 0.0])
    down = np.cross(forward, right)
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2] = right, down, forward
    pose[:3, 3] = position
    return pose


@dataclass
class Layout:
    """Everything a scene is rendered from; trajectories re-render the same layout."""

    room: Room
    objects: list[SceneObject]
    camera_position: np.ndarray
    camera_yaw: float
    camera_pitch: float

    @property
    def camera_pose(self) -> np.ndarray:
        return camera_pose(self.camera_position, self.camera_yaw, self.camera_pitch)


def _sample_room(rng: np.random.Generator) -> Room:
    half_w = float(rng.uniform(3.0, 4.5))
    return Room(x_min=-float(rng.uniform(1.5, 2.5)), x_max=float(rng.uniform(5.8, 7.5)),
                y_min=-half_w, y_max=half_w, height=float(rng.uniform(2.5, 3.0)),
                floor_rgb=_FLOORS[rng.integers(len(_FLOORS))],
                wall_rgb=_WALLS[rng.integers(len(_WALLS))],
                light_dir=(float(rng.uniform(-0.6, 0.6)), float(rng.uniform(-0.6, 0.6)), 1.0))


def _sample_size(category: str, rng: np.random.Generator) -> np.ndarray:
    spec = CATEGORY_SPECS[category]
    length, width, height = (float(rng.uniform(*r)) for r in (spec.length, spec.width,
                                                              spec.height))
    if spec.round_footprint:
        length = width
    if category == 'mug':
        length = width * 1.35  # room for the handle
    return np.array([length, width, height])


def _choose_categories(n: int, rng: np.random.Generator) -> list[str]:
    """n categories with repeats, so most scenes have same-category distractors."""
    k = int(rng.integers(2, min(n, 6) + 1))
    chosen = [str(c) for c in rng.choice(CATEGORIES, size=k, replace=False)]
    cats = chosen + [chosen[int(i)] for i in rng.integers(0, k, size=n - k)]
    # big things first so small things can find room (and table tops) afterwards
    return sorted(cats, key=lambda c: CATEGORY_SPECS[c].small)


def _projected_inside(obj: SceneObject, pose: np.ndarray, intrinsics: CameraIntrinsics,
                      min_fraction: float = 0.65) -> bool:
    """Whether most of the object's projected 3D box falls inside the image."""
    pc = (obj.corners() - pose[:3, 3]) @ pose[:3, :3]
    if (pc[:, 2] <= 0.3).any():
        return False
    u = intrinsics.fx * pc[:, 0] / pc[:, 2] + intrinsics.cx
    v = intrinsics.fy * pc[:, 1] / pc[:, 2] + intrinsics.cy
    area = (u.max() - u.min()) * (v.max() - v.min())
    iu = max(0.0, min(u.max(), intrinsics.width) - max(u.min(), 0.0))
    iv = max(0.0, min(v.max(), intrinsics.height) - max(v.min(), 0.0))
    return area > 0 and iu * iv / area >= min_fraction


def _place_objects(categories: list[str], room: Room, pose: np.ndarray, cam_yaw: float,
                   intrinsics: CameraIntrinsics, rng: np.random.Generator) -> list[SceneObject]:
    cam_xy = pose[:2, 3]
    half_fov = math.atan(intrinsics.width / 2 / intrinsics.fx)
    placed: list[SceneObject] = []
    floor_disks: list[tuple[np.ndarray, float]] = []
    table_items: dict[int, list[tuple[np.ndarray, float]]] = {}
    for category in categories:
        spec = CATEGORY_SPECS[category]
        color = str(rng.choice(spec.colors))
        size = _sample_size(category, rng)
        radius = 0.5 * float(np.hypot(size[0], size[1]))
        obj = None
        tables = [o for o in placed if o.category == 'table']
        if spec.small and tables and rng.random() < 0.45:
            obj = _place_on_table(category, color, size, tables, table_items, cam_xy, rng,
                                  len(placed) + 1)
            if obj is not None and not _projected_inside(obj, pose, intrinsics):
                obj = None
        for _ in range(40 if obj is None else 0):
            bearing = cam_yaw + rng.uniform(-1.0, 1.0) * (half_fov - math.radians(7))
            dist = rng.uniform(1.0, 2.6) if spec.small else rng.uniform(1.7, 4.8)
            xy = cam_xy + dist * np.array([math.cos(bearing), math.sin(bearing)])
            if not (room.x_min + radius + 0.1 < xy[0] < room.x_max - radius - 0.1
                    and room.y_min + radius + 0.1 < xy[1] < room.y_max - radius - 0.1):
                continue
            if any(np.hypot(*(xy - c)) < radius + r + 0.05 for c, r in floor_disks):
                continue
            if category in _FACING:
                yaw = math.atan2(cam_xy[1] - xy[1], cam_xy[0] - xy[0]) + rng.uniform(-0.7, 0.7)
            else:
                yaw = rng.uniform(-math.pi, math.pi)
            cand = SceneObject(len(placed) + 1, category, color, COLORS[color],
                               np.array([xy[0], xy[1], size[2] / 2]), size, float(yaw))
            if _projected_inside(cand, pose, intrinsics):
                obj = cand
                floor_disks.append((xy, radius))
                break
        if obj is not None:
            placed.append(obj)
    return placed


def _place_on_table(category: str, color: str, size: np.ndarray, tables: list[SceneObject],
                    table_items: dict[int, list[tuple[np.ndarray, float]]], cam_xy: np.ndarray,
                    rng: np.random.Generator, instance_id: int) -> SceneObject | None:
    table = tables[int(rng.integers(len(tables)))]
    radius = 0.5 * float(np.hypot(size[0], size[1]))
    free_x = table.size[0] / 2 - radius - 0.03
    free_y = table.size[1] / 2 - radius - 0.03
    if free_x <= 0 or free_y <= 0:
        return None
    items = table_items.setdefault(table.instance_id, [])
    c, s = math.cos(table.yaw), math.sin(table.yaw)
    for _ in range(15):
        local = np.array([rng.uniform(-free_x, free_x), rng.uniform(-free_y, free_y)])
        xy = table.center[:2] + np.array([c * local[0] - s * local[1],
                                          s * local[0] + c * local[1]])
        if any(np.hypot(*(xy - p)) < radius + r + 0.03 for p, r in items):
            continue
        items.append((xy, radius))
        if category in _FACING:
            yaw = math.atan2(cam_xy[1] - xy[1], cam_xy[0] - xy[0]) + rng.uniform(-0.5, 0.5)
        else:
            yaw = rng.uniform(-math.pi, math.pi)
        z = table.size[2] + size[2] / 2
        return SceneObject(instance_id, category, color, COLORS[color],
                           np.array([xy[0], xy[1], z]), size, float(yaw))
    return None


def _renumber(objects: list[SceneObject]) -> list[SceneObject]:
    return [SceneObject(i + 1, o.category, o.color_name, o.color_rgb, o.center, o.size, o.yaw)
            for i, o in enumerate(objects)]


def min_visible_pixels(width: int, height: int) -> int:
    """Smallest visible area an object may keep (184 px at 640x480, scaled with the image)."""
    return max(20, int(round(0.0006 * width * height)))


def sample_layout(rng: np.random.Generator, intrinsics: CameraIntrinsics,
                  n_objects: int | None = None, camera_pitch: float | None = None) -> Layout:
    """A room, camera and objects placed in view (before the visibility check).
    ``camera_pitch`` (radians down; default: drawn from 0.30-0.45) replaces the drawn tilt,
    the random stream staying the same, e.g. 0.0 for a camera that looks straight ahead."""
    if n_objects is not None and not MIN_OBJECTS <= n_objects <= MAX_OBJECTS:
        raise InputError(f'n_objects must be in [{MIN_OBJECTS}, {MAX_OBJECTS}], got {n_objects}')
    for _ in range(50):
        room = _sample_room(rng)
        position = np.array([0.0, rng.uniform(-0.3, 0.3), rng.uniform(1.0, 1.45)])
        yaw, pitch = float(rng.uniform(-0.15, 0.15)), float(rng.uniform(0.30, 0.45))
        if camera_pitch is not None:
            pitch = float(camera_pitch)
        pose = camera_pose(position, yaw, pitch)
        n = int(n_objects or rng.integers(MIN_OBJECTS, MAX_OBJECTS + 1))
        objects = _place_objects(_choose_categories(n, rng), room, pose, yaw, intrinsics, rng)
        if len(objects) >= MIN_OBJECTS:
            return Layout(room, objects, position, yaw, pitch)
    raise InputError(f'could not lay out {MIN_OBJECTS}+ objects at '
                     f'{intrinsics.width}x{intrinsics.height} in 50 tries')


def _visible_layout(seed: int, intrinsics: CameraIntrinsics, n_objects: int | None,
                    noise_sigma: float, dropout: float, camera_pitch: float | None = None,
                    ) -> tuple[Layout, Frame, np.random.Generator]:
    """Lay out and render until every object is visible enough: objects that are too small
    or mostly hidden are dropped (which only uncovers the others) and the frame re-rendered;
    if fewer than ``MIN_OBJECTS`` would remain, the layout is drawn again."""
    rng = np.random.default_rng(seed)
    min_px = min_visible_pixels(intrinsics.width, intrinsics.height)
    pose = None
    for _ in range(30):
        layout = sample_layout(rng, intrinsics, n_objects, camera_pitch)
        pose = layout.camera_pose
        objects = layout.objects
        for _ in range(4):
            frame, stats = render_with_stats(objects, pose, intrinsics, layout.room,
                                             noise_seed=int(seed), noise_sigma=noise_sigma,
                                             dropout=dropout)
            keep = [o for o in objects if stats.visible[o.instance_id] >= min_px
                    and stats.visible[o.instance_id] >= 0.35 * stats.unoccluded[o.instance_id]]
            if len(keep) == len(objects):
                layout.objects = objects
                return layout, frame, rng
            if len(keep) < MIN_OBJECTS:
                break
            objects = _renumber(keep)
    raise InputError(f'no layout with {MIN_OBJECTS}+ visible objects for seed {seed} at '
                     f'{intrinsics.width}x{intrinsics.height} (min {min_px} px each)')


def generate_scene(seed: int, width: int = 640, height: int = 480, *,
                   n_objects: int | None = None, hfov_deg: float = 69.0, dropout: float = 0.002,
                   noise_sigma: float = 2.0, max_expressions: int = 16,
                   max_captions: int = 12, camera_pitch: float | None = None) -> Scene:
    """A scene with one rendered frame, referring expressions and VSR captions.

    Same seed and arguments give the same scene, byte for byte. ``camera_pitch``: see
    ``sample_layout``.
    """
    scene, _ = generate_scene_and_layout(seed, width, height, n_objects=n_objects,
                                         hfov_deg=hfov_deg, dropout=dropout,
                                         noise_sigma=noise_sigma,
                                         max_expressions=max_expressions,
                                         max_captions=max_captions, camera_pitch=camera_pitch)
    return scene


def generate_scene_and_layout(seed: int, width: int = 640, height: int = 480, *,
                              n_objects: int | None = None, hfov_deg: float = 69.0,
                              dropout: float = 0.002, noise_sigma: float = 2.0,
                              max_expressions: int = 16, max_captions: int = 12,
                              camera_pitch: float | None = None) -> tuple[Scene, Layout]:
    """``generate_scene`` that also returns the layout (room, camera) it rendered."""
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f'seed must be an integer >= 0, got {seed!r}')
    if width < 32 or height < 24:
        raise InputError(f'image must be at least 32x24, got {width}x{height}')
    intrinsics = intrinsics_from_fov(width, height, hfov_deg)
    layout, frame, rng = _visible_layout(int(seed), intrinsics, n_objects, noise_sigma, dropout,
                                         camera_pitch)
    objects, pose = layout.objects, layout.camera_pose
    expressions, captions = describe_view(objects, pose, rng, max_expressions, max_captions)
    return Scene(int(seed), objects, frame, expressions, captions), layout


def describe_view(objects: list[SceneObject], camera_pose: np.ndarray,
                  rng: np.random.Generator | int = 0, max_expressions: int = 16,
                  max_captions: int = 12) -> tuple[list[Expression], list[VsrCaption]]:
    """Expressions and captions for ``objects`` seen from ``camera_pose`` (e.g. another
    frame of a trajectory: left/right and near/far depend on the viewpoint)."""
    if not isinstance(rng, np.random.Generator):
        rng = np.random.default_rng(rng)
    views = object_views(objects, np.asarray(camera_pose, dtype=np.float64))
    expressions = select_expressions(candidate_expressions(views), rng, max_expressions)
    return expressions, vsr_captions(views, rng, max_captions)
