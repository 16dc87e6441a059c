"""Depth proposals: remove the dominant planes, split what is left at depth edges.

Indoor scenes are mostly floor, walls and table tops. RANSAC on a few thousand
back-projected points finds those planes; the floor (the lowest horizontal plane) and
large vertical planes (walls) are background. What remains is split into objects by
connected components whose links break at depth discontinuities and where something
stands on a horizontal surface (a mug on a table top: continuous depth, but the mug's
pixels rise above the table's plane). Thin bridges are opened before labelling and the
pixels they took are given back afterwards.

Everything runs on a grid of every ``stride``-th pixel (half resolution by default) and
labels are brought back to full resolution, where pixels whose depth disagrees with
their label are dropped. That keeps a 640x480 frame well under the budget of a camera
stream on one core.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import cv2
import numpy as np
from scipy.ndimage import find_objects

from spatial_llava_ros.camera_types import CameraIntrinsics
from spatial_llava_ros.errors import InputError
from spatial_llava_ros.geometry.camera import validate_intrinsics
from spatial_llava_ros.marks.params import DepthSegmentParams
from spatial_llava_ros.marks.proposals import Proposal, ProposalResult, register

if TYPE_CHECKING:
    from spatial_llava_ros.marks.config import MarkerConfig
    from spatial_llava_ros.marks.inputs import FrameInput

UP_CAMERA = np.array([0.0, -1.0, 0.0])  # optical frame: y points down




@dataclass
class Plane:
    normal: np.ndarray  # (3,) unit, oriented towards the camera's "up" side
    offset: float  # n.p + offset = 0; offset = height of the camera above the plane
    kind: str = 'other'  # floor | ceiling | table | wall | other
    inliers: int = 0


@dataclass
class DepthSegmentation:
    labels: np.ndarray  # (H, W) int32 full resolution, 0 = none
    n_labels: int
    planes: list[Plane]
    background: np.ndarray  # (h, w) bool, working resolution: floor and wall pixels
    notes: list[str] = field(default_factory=list)
    # per label (index k - 1): a full-resolution (rows, cols) slice that holds all of it,
    # from the working grid (4x fewer pixels to scan than the full-resolution labels)
    slices: list | None = None


def _rays(shape: tuple[int, int], stride: int, k: CameraIntrinsics) -> tuple[np.ndarray, ...]:
    h, w = shape
    xr = ((np.arange(0, w, stride, dtype=np.float32) - k.cx) / k.fx)[None, :]
    yr = ((np.arange(0, h, stride, dtype=np.float32) - k.cy) / k.fy)[:, None]
    return xr, yr


def _threshold(z: np.ndarray, p: DepthSegmentParams) -> np.ndarray:
    return p.plane_threshold_m + p.plane_threshold_per_m * z


def fit_planes(points: np.ndarray, p: DepthSegmentParams) -> list[Plane]:
    """Up to ``max_planes`` dominant planes of an (N, 3) cloud, greedy RANSAC, vectorised."""
    return _fit_planes(points.shape[0], lambda idx: points[idx], p)


def _fit_planes(count: int, take, p: DepthSegmentParams) -> list[Plane]:
    """``fit_planes`` on ``count`` points of which only the sampled ones are built:
    ``take(idx)`` -> the (len(idx), 3) points at those indices, or all for ``slice(None)``."""
    rng = np.random.default_rng(p.seed)
    if count > p.ransac_points:
        points = take(rng.choice(count, p.ransac_points, replace=False))
    else:
        points = take(slice(None))
    remaining = points.astype(np.float64)
    n0 = points.shape[0]
    planes: list[Plane] = []
    while len(planes) < p.max_planes and remaining.shape[0] >= max(3, p.min_plane_fraction * n0):
        n = remaining.shape[0]
        idx = rng.integers(0, n, size=(p.ransac_hypotheses, 3))
        a, b, c = remaining[idx[:, 0]], remaining[idx[:, 1]], remaining[idx[:, 2]]
        u, v = b - a, c - a  # the cross product written out: np.cross costs 4x as much
        normals = np.stack([u[:, 1] * v[:, 2] - u[:, 2] * v[:, 1],
                            u[:, 2] * v[:, 0] - u[:, 0] * v[:, 2],
                            u[:, 0] * v[:, 1] - u[:, 1] * v[:, 0]], axis=1)
        norm = np.linalg.norm(normals, axis=1)
        ok = norm > 1e-9
        if not ok.any():
            break
        normals = normals[ok] / norm[ok, None]
        offsets = -np.einsum('ij,ij->i', normals, a[ok])
        thr = _threshold(remaining[:, 2], p)
        dist = np.abs(remaining @ normals.T + offsets[None, :])
        counts = np.count_nonzero(dist < thr[:, None], axis=0)
        best = int(np.argmax(counts))
        if counts[best] < p.min_plane_fraction * n0:
            break
        inl = dist[:, best] < thr
        normal, offset = _refit(remaining[inl])
        inl = np.abs(remaining @ normal + offset) < thr
        planes.append(Plane(normal, offset, inliers=int(inl.sum())))
        remaining = remaining[~inl]
    return planes


def _refit(pts: np.ndarray) -> tuple[np.ndarray, float]:
    """Least-squares plane through points, normal oriented to the camera's up side."""
    centre = pts.mean(axis=0)
    q = pts - centre
    _, vecs = np.linalg.eigh(q.T @ q)  # 3x3: far cheaper than an SVD of the N x 3 points
    normal = vecs[:, 0]
    if normal @ UP_CAMERA < 0 or (abs(normal @ UP_CAMERA) < 1e-6 and normal[2] > 0):
        normal = -normal
    return normal, float(-normal @ centre)


def _extent(xs: np.ndarray, ys: np.ndarray, zs: np.ndarray) -> float:
    """Largest extent (metres) of a point patch: robust bounding range along its main axes."""
    if xs.size < 3:
        return 0.0
    pts = np.stack([xs, ys, zs], axis=1)
    pts = pts - pts.mean(axis=0)
    cov = pts.T @ pts / pts.shape[0]
    _, vecs = np.linalg.eigh(cov)
    proj = pts @ vecs[:, -1]
    lo, hi = _percentiles(proj, (0.02, 0.98))
    return float(hi - lo)


def _percentiles(v: np.ndarray, qs: tuple[float, ...]) -> list[float]:
    """``np.percentile(v, 100 * q)`` (linear, equal to within a rounding) for each q, from
    one partition instead of numpy's general path (4x the time on a few hundred points)."""
    n = v.size
    pos = [(n - 1) * q for q in qs]
    below = [min(int(np.floor(x)), n - 1) for x in pos]
    part = np.partition(v, sorted({k for b in below for k in (b, min(b + 1, n - 1))}))
    out = []
    for x, b in zip(pos, below):
        # in float64 whatever the data, as numpy's lerp: from the nearer end, so t = 1
        # gives exactly the upper value
        a, c, t = float(part[b]), float(part[min(b + 1, n - 1)]), x - b
        d = c - a
        out.append(a + d * t if t < 0.5 else c - d * (1 - t))
    return out


def _classify(planes: list[Plane], p: DepthSegmentParams,
              sample: np.ndarray | None = None) -> None:
    """Label planes floor / table / wall / other.

    "Up" is the normal of the biggest plane that roughly faces the camera's -y (the
    floor, or a table top filling the view); horizontal and vertical are judged
    against it, which tolerates any camera pitch up to ``gravity_deg``.
    """
    cands = [pl for pl in planes if pl.normal @ UP_CAMERA >= np.cos(np.radians(p.gravity_deg))]
    if not cands:
        return
    up = max(cands, key=lambda pl: pl.inliers).normal
    cos_h = np.cos(np.radians(p.horizontal_deg))
    sin_v = np.sin(np.radians(p.vertical_deg))
    horizontal = []
    for pl in planes:
        c = float(pl.normal @ up)
        if c >= cos_h:
            pl.kind = 'table'
            if pl.offset >= p.min_floor_height_m:
                horizontal.append(pl)
        elif abs(c) <= sin_v:
            pl.kind = 'wall'
    # the floor is the lowest horizontal plane with nothing under it (a RANSAC plane that
    # cuts obliquely through the scene has points on both sides)
    horizontal = [pl for pl in horizontal if sample is None
                  or not _has_points_behind(pl.normal, pl.offset, sample)]
    if horizontal:
        max(horizontal, key=lambda pl: pl.offset).kind = 'floor'
    # a horizontal plane well above the camera with nothing beyond it is the ceiling: a
    # camera that looks straight ahead sees it as a large region (issue 14); a shelf above
    # the camera has things on it and stays a 'table'
    for pl in planes:
        if pl.kind == 'table' and pl.offset <= -p.min_floor_height_m and (
                sample is None or not _has_points_behind(pl.normal, pl.offset, sample)):
            pl.kind = 'ceiling'


def _chromaticity(rgb_small: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(r, g) chromaticity and brightness r+g+b: shading scales brightness, not chromaticity."""
    r, g, b = (rgb_small[:, :, c].astype(np.float32) for c in range(3))
    total = r + g  # channel by channel: a reduction over the last axis is 5x slower
    total += b
    total += 1.0
    r /= total
    g /= total
    return r, g, total


def _shift_cut(a: np.ndarray, b: np.ndarray, cut_a: np.ndarray, cut_b: np.ndarray,
               cut: np.ndarray, axis: int) -> None:
    """OR the per-link decisions for (pixel, next pixel along axis) into ``cut``."""
    if axis == 1:
        cut[:, :-1] |= cut_a
        cut[:, 1:] |= cut_b
    else:
        cut[:-1, :] |= cut_a
        cut[1:, :] |= cut_b


def segment_depth(depth: np.ndarray, intrinsics: CameraIntrinsics,
                  params: DepthSegmentParams | None = None,
                  rgb: np.ndarray | None = None) -> DepthSegmentation:
    """Object labels for a metric depth map (float metres, NaN invalid) of the intrinsics' size.

    ``rgb`` (optional, same size) sharpens two decisions where depth alone is ambiguous:
    a flat thing lying on the floor or a table (a book) is not part of that plane when
    its colour differs, and two touching objects at the same depth split where their
    chromaticity changes.
    """
    p = params or DepthSegmentParams()
    validate_intrinsics(intrinsics)
    full_h, full_w = depth.shape
    s = max(1, int(p.stride))
    d = np.ascontiguousarray(depth[::s, ::s], dtype=np.float32)
    h, w = d.shape
    valid = np.isfinite(d)
    notes: list[str] = []
    if valid.sum() < 3:
        notes.append('no valid depth')
        return DepthSegmentation(np.zeros((full_h, full_w), np.int32), 0, [],
                                 np.zeros((h, w), bool), notes)
    z = np.where(valid, d, 0.0).astype(np.float32)
    xr, yr = _rays((full_h, full_w), s, intrinsics)
    px = xr * z
    py = yr * z
    vv = np.flatnonzero(valid)
    flat = (px.ravel(), py.ravel(), z.ravel())

    def take(idx) -> np.ndarray:  # the valid points at idx, built only when asked for
        at = vv[idx]
        return np.stack([a[at] for a in flat], axis=1)

    planes = _fit_planes(vv.size, take, p)
    chroma = None
    if rgb is not None:
        small = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA) if s > 1 else rgb
        chroma = _chromaticity(small)

    thr = _threshold(z, p)
    inlier_maps: list[np.ndarray] = []
    dists: list[np.ndarray] = []
    for pl in planes:
        dist = px * pl.normal[0] + py * pl.normal[1] + z * pl.normal[2] + pl.offset
        inl = valid & (np.abs(dist) < thr)
        # refit on every grid inlier: the sampled fit is a few millimetres off
        if inl.sum() >= 3:
            ii = np.flatnonzero(inl)
            ii = ii[::max(1, ii.size // 6000)]  # 6000 points pin a plane down to < 1 mm
            n, off = _refit(np.stack([px.ravel()[ii], py.ravel()[ii], z.ravel()[ii]], axis=1))
            pl.normal, pl.offset = n, off
            dist = px * n[0] + py * n[1] + z * n[2] + off
            inl = valid & (np.abs(dist) < thr)
        inlier_maps.append(inl)
        dists.append(dist)
        pl.inliers = int(inl.sum())
    sample = take(slice(None, None, max(1, vv.size // 3000)))
    _classify(planes, p, sample)
    foreign: dict[int, np.ndarray] = {}  # per plane: pixels of another chromaticity
    for pl in planes:
        if pl.kind == 'wall' and _has_points_behind(pl.normal, pl.offset, sample):
            pl.kind = 'other'  # a box face or a sofa front, not the room's boundary
    if chroma is not None:
        for i, pl in enumerate(planes):
            if pl.kind in ('floor', 'table'):
                same_chroma, same_bright = _plane_colored(inlier_maps[i], chroma, p)
                inlier_maps[i] &= same_chroma & same_bright
                # another colour inside the plane's band: something lying on it (a book, a
                # laptop), unless it is only darker or brighter *below* the top surface,
                # where the table's own edge faces are (same albedo, other shading)
                foreign[i] = ~same_chroma | (~same_bright & (dists[i] > 0.25 * thr))
    background = np.zeros((h, w), bool)
    for i, pl in enumerate(planes):
        if pl.kind in ('floor', 'ceiling'):
            background |= inlier_maps[i]
    for i, pl in enumerate(planes):
        if pl.kind == 'wall':
            # the floor's pixels go first: a box face's plane also cuts the floor along a line
            wall_px = inlier_maps[i] & ~background
            n_comp, comp, stats, _ = cv2.connectedComponentsWithStats(
                wall_px.view(np.uint8), connectivity=8)
            for c in range(1, n_comp):
                if stats[c, cv2.CC_STAT_AREA] < max(p.min_component_px,
                                                    p.wall_min_fraction * h * w):
                    continue
                x, y, bw, bh = stats[c, :4]
                box = (slice(y, y + bh), slice(x, x + bw))
                sel = comp[box] == c
                if _extent(px[box][sel], py[box][sel], z[box][sel]) >= p.wall_extent_m:
                    # a wall of the room (nothing behind it, checked above): every patch of
                    # it is background, also those that furniture cuts off from the rest
                    background |= wall_px
                    break
    fg = valid & ~background

    # links to cut: depth jumps (drop the far pixel), colour edges, "stands on a table top"
    cut = np.zeros((h, w), bool)
    jump = p.jump_abs_m + p.jump_rel * z
    for axis in (1, 0):
        za, zb = (z[:, :-1], z[:, 1:]) if axis == 1 else (z[:-1, :], z[1:, :])
        va, vb = (valid[:, :-1], valid[:, 1:]) if axis == 1 else (valid[:-1, :], valid[1:, :])
        ja = jump[:, :-1] if axis == 1 else jump[:-1, :]
        dz = zb - za
        big = va & vb & (np.abs(dz) > ja)
        _shift_cut(za, zb, big & (dz < 0), big & (dz > 0), cut, axis)
        if chroma is not None and p.chroma_edge > 0:
            r, g, tot = chroma
            if axis == 1:
                dc = np.abs(r[:, 1:] - r[:, :-1]) + np.abs(g[:, 1:] - g[:, :-1])
                bright = np.minimum(tot[:, 1:], tot[:, :-1]) > p.chroma_min_brightness
            else:
                dc = np.abs(r[1:, :] - r[:-1, :]) + np.abs(g[1:, :] - g[:-1, :])
                bright = np.minimum(tot[1:, :], tot[:-1, :]) > p.chroma_min_brightness
            edge = va & vb & bright & (dc > p.chroma_edge) & ~big
            _shift_cut(za, zb, edge & (dz < 0), edge & (dz >= 0), cut, axis)
    for i, pl in enumerate(planes):
        if pl.kind != 'table':
            continue
        on = inlier_maps[i]
        # above the plane, or lying on it in another colour (a book); not the table's own
        # edge faces, which are in the plane's band but only differ in shading
        off = valid & ~on & (dists[i] > thr)
        if i in foreign:
            off |= valid & ~on & (np.abs(dists[i]) <= thr) & foreign[i]
        edge = np.zeros((h, w), bool)
        edge[:, :-1] |= on[:, :-1] & off[:, 1:]
        edge[:, 1:] |= on[:, 1:] & off[:, :-1]
        edge[:-1, :] |= on[:-1, :] & off[1:, :]
        edge[1:, :] |= on[1:, :] & off[:-1, :]
        cut |= edge
    core = (fg & ~cut).view(np.uint8)
    if p.open_bridges:
        core = cv2.morphologyEx(core, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    n_lab, lab, stats, _ = cv2.connectedComponentsWithStats(core, connectivity=4)
    small_cc = stats[:, cv2.CC_STAT_AREA] < p.min_component_px
    small_cc[0] = False
    if small_cc.any():
        lab[small_cc[lab]] = 0
    lab = _regrow(lab, fg, z, jump, iterations=2)
    lab = _attach_thin_parts(lab, fg, z, jump, p.min_component_px)
    lab = _fill_dropouts(lab, valid)
    if chroma is not None:
        tables = [inlier_maps[i] for i, pl in enumerate(planes) if pl.kind == 'table']
        if tables:
            lab = _merge_seats(lab, tables, chroma, px, py, z, p)
    up = next((pl.normal for pl in planes if pl.kind == 'floor'), None)
    lab = _drop_walls(lab, px, py, z, thr, up, sample, p)

    # back to full resolution; drop pixels whose depth disagrees with their label's
    n_out = int(lab.max())
    grid_slices = find_objects(lab, max_label=n_out) if s > 1 else None
    if s > 1:
        # nearest-neighbour upsampling: full (y, x) takes grid (y // s, x // s), as sampled
        up = cv2.resize(lab.astype(np.int32, copy=False), (full_w, full_h),
                        interpolation=cv2.INTER_NEAREST)
        dup = cv2.resize(d, (full_w, full_h), interpolation=cv2.INTER_NEAREST)
        tol = dup * np.float32(p.jump_rel)
        tol += np.float32(p.jump_abs_m)
        gap = cv2.absdiff(np.asarray(depth, np.float32), dup)
        with np.errstate(invalid='ignore'):
            up[gap >= tol] = 0  # NaN compares false: no evidence
    else:
        up = lab.astype(np.int32)
    slices = None
    if grid_slices is not None:
        # full-resolution pixel (y, x) took grid row y // s or, where the size is not a
        # multiple of s, at most one more (the resize's own rounding): one cell of slack
        slices = [None if g is None else
                  (slice(max(0, (g[0].start - 1) * s), min(g[0].stop * s, full_h)),
                   slice(max(0, (g[1].start - 1) * s), min(g[1].stop * s, full_w)))
                  for g in grid_slices]
    return DepthSegmentation(up, n_out, planes, background, notes, slices)


def _plane_colored(inliers: np.ndarray, chroma: tuple,
                   p: DepthSegmentParams) -> tuple[np.ndarray, np.ndarray]:
    """Pixels whose chromaticity, and whose brightness, match the plane's own (median of
    its inliers)."""
    r, g, tot = chroma
    sel = np.flatnonzero(inliers)
    if sel.size == 0:
        return inliers, inliers
    if sel.size > 4000:
        sel = sel[:: sel.size // 4000]
    mr, mg, mt = (_median(a.ravel()[sel]) for a in (r, g, tot))
    return (np.abs(r - mr) + np.abs(g - mg) < p.plane_chroma), \
        (np.abs(np.log(tot / mt)) < p.plane_brightness_log)


def _median(v: np.ndarray) -> float:
    """``np.median`` of a non-empty 1-D array without NaN, from one partition (a third of
    numpy's time on the few thousand values a plane's colour is taken from)."""
    n = v.size
    k = n // 2
    if n % 2:
        return float(np.partition(v, k)[k])
    return float(np.partition(v, (k - 1, k))[k - 1:k + 1].mean())


def _merge_seats(lab: np.ndarray, tables: list[np.ndarray], chroma: tuple, px: np.ndarray,
                 py: np.ndarray, z: np.ndarray, p: DepthSegmentParams) -> np.ndarray:
    """Undo the table-top cut where the "table" is the seat of a sofa or chair.

    A part that rises from a horizontal surface, has the surface's own chromaticity and is
    large (a sofa's back and arms) belongs to the same object; a mug, a book or a laptop
    on a table is smaller than ``seat_part_extent_m`` or differs in colour, and stays apart.
    """
    n = int(lab.max()) + 1
    if n <= 2:
        return lab
    flat = lab.ravel()
    sizes = np.bincount(flat, minlength=n)
    on_table = np.zeros(n, np.int64)
    for inl in tables:
        on_table += np.bincount(flat, weights=inl.ravel(), minlength=n).astype(np.int64)
    is_top = (on_table > 0.6 * sizes) & (sizes > 0)
    is_top[0] = False
    if not is_top.any():
        return lab
    r, g, tot = chroma
    bright = (tot.ravel() > p.chroma_min_brightness)
    w_ok = np.where(bright, 1.0, 0.0)
    cnt = np.bincount(flat, weights=w_ok, minlength=n)
    mr = np.bincount(flat, weights=r.ravel() * w_ok, minlength=n) / np.maximum(cnt, 1)
    mg = np.bincount(flat, weights=g.ravel() * w_ok, minlength=n) / np.maximum(cnt, 1)
    pairs = set()
    for shift in (1, 2):
        for a, b in ((lab[:, :-shift], lab[:, shift:]), (lab[:-shift, :], lab[shift:, :])):
            diff = (a != b) & (a > 0) & (b > 0)
            pairs.update(zip(a[diff].tolist(), b[diff].tolist()))
    parent = np.arange(n)
    slices = find_objects(lab)
    extent_cache: dict[int, float] = {}

    def extent(k: int) -> float:
        if k not in extent_cache:
            sl = slices[k - 1]
            sel = lab[sl] == k
            step = max(1, int(sizes[k]) // 300)
            extent_cache[k] = _extent(px[sl][sel][::step], py[sl][sel][::step],
                                      z[sl][sel][::step])
        return extent_cache[k]

    for a, b in pairs:
        top, part = (a, b) if is_top[a] and not is_top[b] else \
            (b, a) if is_top[b] and not is_top[a] else (0, 0)
        if not top or cnt[top] < 10 or cnt[part] < 10:
            continue
        if abs(mr[top] - mr[part]) + abs(mg[top] - mg[part]) > p.plane_chroma:
            continue
        if extent(part) < p.seat_part_extent_m:
            continue
        ra, rb = parent[top], parent[part]
        while parent[ra] != ra:
            ra = parent[ra]
        while parent[rb] != rb:
            rb = parent[rb]
        parent[rb] = ra
    if (parent == np.arange(n)).all():
        return lab
    for i in range(n):
        root = i
        while parent[root] != root:
            root = parent[root]
        parent[i] = root
    return parent[lab].astype(lab.dtype)


def _has_points_behind(normal: np.ndarray, offset: float, sample: np.ndarray,
                       margin: float = 0.1, share: float = 0.01) -> bool:
    """Whether more than ``share`` of the scene lies beyond the plane, seen from the camera.

    A room is convex: nothing is behind a wall or under the floor. Something behind a
    vertical plane makes it the face of an object (a cabinet front, a sofa's back).
    """
    side = 1.0 if offset >= 0 else -1.0  # orient the normal towards the camera (origin)
    dist = side * (sample @ normal + offset)
    # the margin grows with depth: a degree of tilt in a far wall's fit moves it decimetres
    return bool(np.mean(dist < -(margin + 0.03 * sample[:, 2])) > share)


def _drop_walls(lab: np.ndarray, px: np.ndarray, py: np.ndarray, z: np.ndarray,
                thr: np.ndarray, up: np.ndarray | None, sample: np.ndarray,
                p: DepthSegmentParams) -> np.ndarray:
    """Remove components that are one large vertical plane: walls RANSAC did not pick
    (a side wall seen at the image edge has too few points to be a dominant plane)."""
    sizes = np.bincount(lab.ravel())
    for k, sl in enumerate(find_objects(lab), start=1):
        if sl is None or sizes[k] < p.wall_min_fraction * lab.size:
            continue
        sel = lab[sl] == k
        step = max(1, int(sizes[k]) // 400)
        pts = np.stack([px[sl][sel][::step], py[sl][sel][::step], z[sl][sel][::step]],
                       axis=1).astype(np.float64)
        # a wall cut by the image edge shows less of itself: a lower bar there; the
        # extent is the cheap test, so it goes before the plane fits
        at_edge = sl[0].start == 0 or sl[1].start == 0 or sl[1].stop == lab.shape[1]
        if _extent(pts[:, 0], pts[:, 1], pts[:, 2]) < p.wall_extent_m * (0.6 if at_edge
                                                                         else 1.0):
            continue
        t = thr[sl][sel][::step]
        normal, offset = _refit(pts)
        for _ in range(2):  # least squares is pulled by a few off-plane points: refit on inliers
            inl = np.abs(pts @ normal + offset) < 3 * t
            if inl.sum() < 3:
                break
            normal, offset = _refit(pts[inl])
        planar = np.mean(np.abs(pts @ normal + offset) < t) >= 0.85
        if not planar:
            continue
        if up is not None and abs(float(normal @ up)) > np.sin(np.radians(p.vertical_deg)):
            continue
        if not _has_points_behind(normal, offset, sample):
            lab[sl][sel] = 0
    return lab


def _fill_dropouts(lab: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Label a pixel without depth when its opposite neighbours agree (sensor dropouts)."""
    hole = ~valid & (lab == 0)
    if not hole.any():
        return lab
    out = lab.copy()
    inner = hole[1:-1, 1:-1]
    up_, down = lab[:-2, 1:-1], lab[2:, 1:-1]
    left, right = lab[1:-1, :-2], lab[1:-1, 2:]
    vert = inner & (up_ == down) & (up_ > 0)
    horz = inner & (left == right) & (left > 0) & ~vert
    core = out[1:-1, 1:-1]
    core[vert] = up_[vert]
    core[horz] = left[horz]
    return out


def _attach_thin_parts(lab: np.ndarray, fg: np.ndarray, z: np.ndarray, jump: np.ndarray,
                       min_px: int) -> np.ndarray:
    """Thin parts removed by the opening (table and chair legs, a lamp's pole) rejoin the
    component they touch without a depth step; unattached ones become their own label."""
    rest = fg & (lab == 0)
    if not rest.any():
        return lab
    n_rest, comp, stats, _ = cv2.connectedComponentsWithStats(rest.view(np.uint8),
                                                              connectivity=4)
    if n_rest <= 1:
        return lab
    h, w = lab.shape
    idx = np.flatnonzero(rest.ravel())
    col = idx % w
    flat_lab, flat_z, flat_c, flat_j = lab.ravel(), z.ravel(), comp.ravel(), jump.ravel()
    src, dst = [], []
    for step, ok in ((1, col < w - 1), (-1, col > 0), (w, idx < (h - 1) * w), (-w, idx >= w)):
        nb = np.where(ok, idx + step, idx)
        link = ok & (flat_lab[nb] > 0) & (np.abs(flat_z[nb] - flat_z[idx]) < flat_j[idx])
        src.append(flat_c[idx[link]])
        dst.append(flat_lab[nb[link]])
    src_a, dst_a = np.concatenate(src), np.concatenate(dst)
    target = np.zeros(n_rest, np.int64)
    if src_a.size:
        # the label each leftover part touches most
        key = src_a.astype(np.int64) * (int(lab.max()) + 1) + dst_a
        keys, counts = np.unique(key, return_counts=True)
        order = np.argsort(counts, kind='stable')
        target[keys[order] // (int(lab.max()) + 1)] = keys[order] % (int(lab.max()) + 1)
    sizes = stats[:, cv2.CC_STAT_AREA]
    new = (target == 0) & (sizes >= min_px)
    new[0] = False
    target[new] = int(lab.max()) + 1 + np.arange(int(new.sum()))
    target[0] = 0
    out = lab.copy()  # only the leftover pixels change: no pass over the whole grid
    out.ravel()[idx] = target[comp.ravel()[idx]]
    return out


def _regrow(lab: np.ndarray, fg: np.ndarray, z: np.ndarray, jump: np.ndarray,
            iterations: int) -> np.ndarray:
    """Give pixels removed by cuts and opening back to a depth-continuous labelled neighbour.

    Works on the indices of the free pixels only (a thin rim), not on whole images.
    """
    h, w = lab.shape
    flat_lab = lab.ravel()
    flat_z = z.ravel()
    flat_j = jump.ravel()
    free = np.flatnonzero((fg & (lab == 0)).ravel())
    for _ in range(iterations):
        if free.size == 0:
            break
        col = free % w
        best = np.zeros(free.size, np.int32)
        best_gap = np.full(free.size, np.inf, np.float32)
        for step, ok in ((1, col < w - 1), (-1, col > 0), (w, free < (h - 1) * w),
                         (-w, free >= w)):
            nb = np.where(ok, free + step, free)
            nl = flat_lab[nb]
            gap = np.abs(flat_z[nb] - flat_z[free])
            take = ok & (nl > 0) & (gap < flat_j[free]) & (gap < best_gap)
            best[take] = nl[take]
            best_gap[take] = gap[take]
        got = best > 0
        if not got.any():
            break
        flat_lab[free[got]] = best[got]  # after the sweep: one ring per iteration
        free = free[~got]
    return lab


def labels_to_masks(labels: np.ndarray, slices: list | None = None,
                    ) -> list[tuple[np.ndarray, tuple[int, int, int, int]]]:
    """(full-resolution bool mask, tight box) per non-zero label, each built inside its box.

    ``slices`` (optional, per label k at index k - 1): regions known to hold each label,
    such as ``DepthSegmentation.slices``; they spare a scan of the whole label image.
    """
    out = []
    for k, sl in enumerate(find_objects(labels) if slices is None else slices, start=1):
        if sl is None:
            continue
        sub = labels[sl] == k
        if slices is not None:  # a loose region: shrink it to the label's own box
            rows, cols = np.flatnonzero(sub.any(axis=1)), np.flatnonzero(sub.any(axis=0))
            if rows.size == 0:
                continue
            y0, x0 = sl[0].start + int(rows[0]), sl[1].start + int(cols[0])
            sl = (slice(y0, sl[0].start + int(rows[-1]) + 1),
                  slice(x0, sl[1].start + int(cols[-1]) + 1))
            sub = sub[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
        mask = np.zeros(labels.shape, bool)
        mask[sl] = sub
        if sub.any():
            out.append((mask, (sl[1].start, sl[0].start, sl[1].stop, sl[0].stop)))
    return out


@register('depth')
class DepthProposals:
    """Planes removed, the rest split at depth edges; needs depth and intrinsics."""

    name = 'depth'

    def __init__(self, config: MarkerConfig) -> None:
        self.params = config.depth_params

    def propose(self, frame: FrameInput, detections: list | None = None) -> ProposalResult:
        if frame.depth is None or frame.intrinsics is None:
            raise InputError('depth proposals need a depth image and intrinsics; '
                             "use proposals='color' for an RGB-only camera")
        seg = segment_depth(frame.depth, frame.intrinsics, self.params, frame.rgb)
        notes = list(seg.notes)
        masks = labels_to_masks(seg.labels, seg.slices)
        if not masks:
            kinds = ', '.join(pl.kind for pl in seg.planes) or 'none'
            notes.append(f'no object above the background: {len(seg.planes)} plane(s) found '
                         f'({kinds}) and nothing else with valid depth')
        return ProposalResult([Proposal(m, 1.0, box=b) for m, b in masks], notes)
