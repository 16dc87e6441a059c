"""Vectorised numpy ray casting of a room with box/cylinder objects -> RGB, depth, instances.

One ray per pixel, cast only inside each object's projected 2D box, so a 640x480 frame
with a dozen objects renders in a few tens of milliseconds on one core. Depth is exact
(the ray parameter is the optical-axis depth because the ray's camera z component is 1),
so every labelled pixel back-projects onto its object's surface.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from spatial_llava_ros.errors import InputError
from spatial_llava_ros.geometry.camera import validate_intrinsics
from spatial_llava_ros.scene.catalog import Part, object_parts
from spatial_llava_ros.scene.types import CameraIntrinsics, Frame, SceneObject

NEAR = 0.05  # metres: nothing closer to the camera is drawn


@dataclass(frozen=True)
class Room:
    """An axis-aligned room in the world frame; the floor is z = 0."""

    x_min: float = -2.0
    x_max: float = 7.0
    y_min: float = -4.0
    y_max: float = 4.0
    height: float = 2.7
    floor_rgb: tuple[int, int, int] = (170, 140, 105)
    wall_rgb: tuple[int, int, int] = (215, 210, 200)
    light_dir: tuple[float, float, float] = (0.35, 0.45, 1.0)  # towards the light

    def to_dict(self) -> dict:
        return {'x_min': self.x_min, 'x_max': self.x_max, 'y_min': self.y_min,
                'y_max': self.y_max, 'height': self.height, 'floor_rgb': list(self.floor_rgb),
                'wall_rgb': list(self.wall_rgb), 'light_dir': list(self.light_dir)}


@dataclass
class RenderStats:
    """Pixels per instance id: visible after occlusion, and as if nothing occluded it."""

    visible: dict[int, int]
    unoccluded: dict[int, int]


def _pixel_coords(intrinsics: CameraIntrinsics) -> tuple[np.ndarray, np.ndarray]:
    """Normalised image coordinates per column and per row: the optical-frame ray through
    pixel (u, v) is (U[u], V[v], 1), so its parameter t is the depth."""
    u = (np.arange(intrinsics.width, dtype=np.float64) - intrinsics.cx) / intrinsics.fx
    v = (np.arange(intrinsics.height, dtype=np.float64) - intrinsics.cy) / intrinsics.fy
    return u.astype(np.float32), v.astype(np.float32)


def _rays(rot: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """(3, len(v) * len(u)) directions ``rot @ (U, V, 1)`` for the pixel grid v x u.

    Separable, so no per-pixel matrix product: each component is an outer sum.
    Stored axis-major because numpy reduces over a short last axis slowly.
    """
    out = np.empty((3, v.size, u.size), np.float32)
    rot = rot.astype(np.float32)
    for k in range(3):
        np.add((rot[k, 1] * v)[:, None], (rot[k, 0] * u + rot[k, 2])[None, :], out=out[k])
    return out.reshape(3, -1)


@functools.lru_cache(maxsize=256)
def _parts_cached(category: str, size: tuple[float, float, float]) -> tuple[Part, ...]:
    return tuple(object_parts(category, np.array(size)))


def _yaw_matrix(yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _ray_aabb(o: np.ndarray, d: np.ndarray, lo: np.ndarray, hi: np.ndarray,
              want_face: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """Entry distance of rays o + t d (d: (3, M)) into the box [lo, hi] (inf on a miss),
    and the axis (0, 1, 2) of the face it enters through."""
    m = d.shape[1]
    tmin = np.full(m, -np.inf, np.float32)
    tmax = np.full(m, np.inf, np.float32)
    axis = np.zeros(m, np.int8) if want_face else None
    with np.errstate(divide='ignore', invalid='ignore'):
        for k in range(3):
            inv = np.float32(1.0) / d[k]
            t1 = (lo[k] - o[k]) * inv
            t2 = (hi[k] - o[k]) * inv
            tn = np.minimum(t1, t2)
            if axis is not None:
                axis[tn > tmin] = k
            tmin = np.maximum(tmin, tn)
            tmax = np.minimum(tmax, np.maximum(t1, t2))
    miss = ~((tmax >= tmin) & (tmin > NEAR))
    tmin[miss] = np.inf
    return tmin, axis


CYL_SIDE, CYL_CAP = 3, 4  # face codes of cylinder hits (box faces are axes 0, 1, 2)


def _ray_cylinder(o: np.ndarray, d: np.ndarray, center: np.ndarray, radius: float,
                  half_h: float) -> tuple[np.ndarray, np.ndarray]:
    """Nearest hit of rays (d: (3, M)) with a closed vertical cylinder, and the face hit
    (``CYL_SIDE`` or ``CYL_CAP``, the cap facing the camera)."""
    ox, oy = o[0] - center[0], o[1] - center[1]
    dx, dy, dz = d[0], d[1], d[2]
    a = dx * dx + dy * dy
    b = 2.0 * (ox * dx + oy * dy)
    c = ox * ox + oy * oy - radius * radius
    disc = b * b - 4.0 * a * c
    z0, z1 = center[2] - half_h, center[2] + half_h
    with np.errstate(divide='ignore', invalid='ignore'):
        t_side = (-b - np.sqrt(np.maximum(disc, 0.0))) / (2.0 * a)
        z_side = o[2] + t_side * dz
        side_ok = (disc >= 0) & (a > 0) & (t_side > NEAR) & (z_side >= z0) & (z_side <= z1)
        t_side[~side_ok] = np.inf
        t_cap = ((z1 if o[2] > center[2] else z0) - o[2]) / dz
        px = ox + t_cap * dx
        py = oy + t_cap * dy
    cap_ok = (t_cap > NEAR) & (px * px + py * py <= radius * radius)
    t_cap[~cap_ok] = np.inf
    use_cap = t_cap < t_side
    face = np.where(use_cap, np.int8(CYL_CAP), np.int8(CYL_SIDE))
    return np.minimum(t_side, t_cap).astype(np.float32), face


def _surface_normals(parts: tuple[Part, ...], part_idx: np.ndarray, face: np.ndarray,
                     o: np.ndarray, d: np.ndarray, t: np.ndarray) -> np.ndarray:
    """(3, M) object-frame normals of the final hits only (cheaper than for every ray)."""
    normal = np.zeros(d.shape, np.float32)
    for i, part in enumerate(parts):
        m = np.nonzero(part_idx == i)[0]
        if m.size == 0:
            continue
        f = face[m]
        if part.kind == 'box':
            normal[f, m] = -np.sign(d[f, m])
            continue
        side = m[f == CYL_SIDE]
        radius = part.half[0]
        normal[0, side] = (o[0] + t[side] * d[0, side] - part.center[0]) / radius
        normal[1, side] = (o[1] + t[side] * d[1, side] - part.center[1]) / radius
        normal[2, m[f == CYL_CAP]] = 1.0 if o[2] > part.center[2] else -1.0
    return normal


def _pixel_box(obj: SceneObject, cam_r: np.ndarray, cam_t: np.ndarray,
               intrinsics: CameraIntrinsics) -> tuple[int, int, int, int] | None:
    """Image rows/cols [v0, v1) x [u0, u1) that can see ``obj``; None when none can."""
    pc = (obj.corners() - cam_t) @ cam_r  # world -> optical frame
    z = pc[:, 2]
    w, h = intrinsics.width, intrinsics.height
    if (z <= NEAR).all():
        return None
    if (z <= NEAR).any():
        return 0, h, 0, w
    u = intrinsics.fx * pc[:, 0] / z + intrinsics.cx
    v = intrinsics.fy * pc[:, 1] / z + intrinsics.cy
    u0, u1 = max(int(np.floor(u.min())) - 1, 0), min(int(np.ceil(u.max())) + 2, w)
    v0, v1 = max(int(np.floor(v.min())) - 1, 0), min(int(np.ceil(v.max())) + 2, h)
    if u0 >= u1 or v0 >= v1:
        return None
    return v0, v1, u0, u1


def _check_inputs(objects: list[SceneObject], camera_pose: np.ndarray,
                  intrinsics: CameraIntrinsics) -> np.ndarray:
    validate_intrinsics(intrinsics)
    pose = np.asarray(camera_pose, dtype=np.float64)
    if pose.shape != (4, 4) or not np.isfinite(pose).all():
        raise InputError(f'camera_pose must be a finite (4, 4) matrix, got shape {pose.shape}')
    rot = pose[:3, :3]
    err = float(np.abs(rot.T @ rot - np.eye(3)).max())
    if err > 1e-4:
        raise InputError(f'camera_pose rotation is not orthonormal (max error {err:.2e})')
    ids = [o.instance_id for o in objects]
    if any(i <= 0 for i in ids) or len(set(ids)) != len(ids):
        raise InputError(f'instance ids must be unique and > 0, got {ids}')
    return pose


def render_with_stats(objects: list[SceneObject], camera_pose: np.ndarray,
                      intrinsics: CameraIntrinsics, room: Room | None = None, *,
                      noise_seed: int = 0, noise_sigma: float = 2.0, dropout: float = 0.0,
                      stamp_ns: int = 0) -> tuple[Frame, RenderStats]:
    """Render one frame and count, per object, its visible and unoccluded pixels."""
    pose = _check_inputs(objects, camera_pose, intrinsics)
    if not 0.0 <= dropout < 1.0:
        raise InputError(f'dropout must be in [0, 1), got {dropout}')
    room = room or Room()
    cam_r, cam_t = pose[:3, :3], pose[:3, 3]
    h, w = intrinsics.height, intrinsics.width
    if not (room.x_min < cam_t[0] < room.x_max and room.y_min < cam_t[1] < room.y_max
            and 0.0 < cam_t[2] < room.height):
        raise InputError(f'camera at {np.round(cam_t, 3).tolist()} is outside the room '
                         f'x [{room.x_min}, {room.x_max}] y [{room.y_min}, {room.y_max}] '
                         f'z [0, {room.height}]')
    u_coords, v_coords = _pixel_coords(intrinsics)
    rays = _rays(cam_r, u_coords, v_coords)  # (3, H*W) world directions
    origin = cam_t.astype(np.float32)
    n_px = h * w
    key = np.asarray(room.light_dir, np.float64)
    key /= np.linalg.norm(key)
    fill = -cam_r[:, 2]  # a soft light from the camera

    def shade(normals: np.ndarray) -> np.ndarray:
        return (0.32 + 0.5 * np.clip(key @ normals, 0.0, None)
                + 0.28 * np.clip(fill @ normals, 0.0, None)) * 255.0

    # Room: each ray leaves the axis-aligned box through the face it reaches first.
    # Faces are flat, so each has one shaded colour: code = 2 * axis + (ray direction > 0),
    # and code 6 is the darker tile of the 0.5 m floor checker.
    lo = (room.x_min, room.y_min, 0.0)
    hi = (room.x_max, room.y_max, room.height)
    zbuf = np.full(n_px, np.inf, np.float32)
    code = np.zeros(n_px, np.int8)
    with np.errstate(divide='ignore', invalid='ignore'):
        for k in range(3):
            positive = rays[k] > 0
            bound = np.float32(lo[k]) + np.float32(hi[k] - lo[k]) * positive
            t_k = (bound - origin[k]) / rays[k]
            closer = t_k < zbuf  # inf and NaN (rays parallel to the face) never win
            zbuf[closer] = t_k[closer]
            code[closer] = 2 * k + positive[closer]
        parity = np.floor(2.0 * (origin[0] + zbuf * rays[0])) + \
            np.floor(2.0 * (origin[1] + zbuf * rays[1]))
    code[(code == 4) & (parity % 2 > 0)] = 6
    lut_normals = np.zeros((3, 7))
    for c in range(6):
        lut_normals[c // 2, c] = -1.0 if c % 2 else 1.0
    lut_normals[2, 6] = 1.0
    lut_albedo = np.repeat(np.asarray(room.wall_rgb, np.float64)[:, None] / 255.0, 7, axis=1)
    lut_albedo[:, 4] = np.asarray(room.floor_rgb) / 255.0  # code 4: ray going down -> floor
    lut_albedo[:, 6] = 0.88 * np.asarray(room.floor_rgb) / 255.0
    lut = np.ascontiguousarray((lut_albedo * shade(lut_normals)).T.astype(np.float32))
    color = np.take(lut, code, axis=0)  # (H*W, 3) radiance before noise
    instance = np.zeros(n_px, np.int32)
    unoccluded_px: dict[int, int] = {}

    for obj in objects:
        box = _pixel_box(obj, cam_r, cam_t, intrinsics)
        unoccluded_px[obj.instance_id] = 0
        if box is None:
            continue
        v0, v1, u0, u1 = box
        pix = (np.arange(v0, v1)[:, None] * w + np.arange(u0, u1)[None, :]).ravel()
        yaw_r = _yaw_matrix(obj.yaw)
        d_local = _rays(yaw_r.T @ cam_r, u_coords[u0:u1], v_coords[v0:v1])
        o_local = (yaw_r.T @ (cam_t - obj.center)).astype(np.float32)
        half = np.asarray(obj.size, np.float32) / 2.0
        t_box, _ = _ray_aabb(o_local, d_local, -half, half, want_face=False)
        sel = np.nonzero(t_box < np.inf)[0]
        if sel.size == 0:
            continue
        d_sel = d_local[:, sel]
        t_best = np.full(sel.size, np.inf, np.float32)
        part_best = np.zeros(sel.size, np.int8)
        face_best = np.zeros(sel.size, np.int8)
        parts = _parts_cached(obj.category, tuple(float(v) for v in obj.size))
        for i, part in enumerate(parts):
            pc = np.asarray(part.center, np.float32)
            ph = np.asarray(part.half, np.float32)
            if part.kind == 'box':
                t, face = _ray_aabb(o_local, d_sel, pc - ph, pc + ph)
            else:
                t, face = _ray_cylinder(o_local, d_sel, pc, float(ph[0]), float(ph[2]))
            closer = t < t_best
            t_best[closer] = t[closer]
            part_best[closer] = i
            face_best[closer] = face[closer]
        hit = np.nonzero(t_best < np.inf)[0]
        if hit.size == 0:
            continue
        gpix = pix[sel[hit]]
        unoccluded_px[obj.instance_id] = int(gpix.size)
        front = np.nonzero(t_best[hit] < zbuf[gpix])[0]
        hit, gpix = hit[front], gpix[front]
        t_hit = t_best[hit]
        zbuf[gpix] = t_hit
        instance[gpix] = obj.instance_id
        normal = _surface_normals(parts, part_best[hit], face_best[hit], o_local,
                                  d_sel[:, hit], t_hit)
        own = np.asarray(obj.color_rgb, np.float32) / 255.0
        part_albedo = np.array([own if p.color is None else np.asarray(p.color) / 255.0
                                for p in parts], np.float32)
        lit = shade(yaw_r @ normal).astype(np.float32)  # normals: object -> world
        color[gpix] = np.take(part_albedo, part_best[hit], axis=0) * lit[:, None]

    counts = np.bincount(instance, minlength=max([o.instance_id for o in objects], default=0) + 1)
    visible_px = {o.instance_id: int(counts[o.instance_id]) for o in objects}

    rng = np.random.default_rng(noise_seed)
    if noise_sigma > 0:  # grey sensor noise; uniform with the requested standard deviation
        noise = rng.random(n_px, dtype=np.float32) - np.float32(0.5)
        color += (noise * np.float32(noise_sigma * 12 ** 0.5))[:, None]
    rgb = np.clip(color, 0.0, 255.0).astype(np.uint8).reshape(h, w, 3)
    depth = zbuf
    depth[~np.isfinite(depth)] = np.nan
    if dropout > 0:
        holes = rng.integers(0, n_px, int(round(dropout * n_px)))
        depth[holes] = np.nan
    frame = Frame(rgb=rgb, depth=depth.reshape(h, w), instance_mask=instance.reshape(h, w),
                  intrinsics=intrinsics, camera_pose=pose.copy(), stamp_ns=int(stamp_ns))
    return frame, RenderStats(visible_px, unoccluded_px)


def render_frame(objects: list[SceneObject], camera_pose: np.ndarray,
                 intrinsics: CameraIntrinsics, room: Room | None = None, *,
                 noise_seed: int = 0, noise_sigma: float = 2.0, dropout: float = 0.0,
                 stamp_ns: int = 0) -> Frame:
    """Render ``objects`` in ``room`` seen from ``camera_pose`` (world_T_camera_optical).

    RGB has Lambertian shading, a floor checker and grey sensor noise (``noise_sigma``);
    ``dropout`` is the fraction of depth pixels set to NaN, as real sensors lose returns.
    """
    frame, _ = render_with_stats(objects, camera_pose, intrinsics, room, noise_seed=noise_seed,
                                 noise_sigma=noise_sigma, dropout=dropout, stamp_ns=stamp_ns)
    return frame
