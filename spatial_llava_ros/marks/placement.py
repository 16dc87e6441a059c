"""Where each number goes and how big it is.

``interior`` (the default): the number sits at the most interior point of its mask (the
maximum of the distance transform) so it is read as belonging to that object, and moves to
the next most interior free spot when it would cover another number. ``beside``: the number
sits just outside its object's box, where it covers the fewest object pixels and no other
number, so that a label as large as the object does not hide what the query names (its
category and colour; docs/training.md, "Towards 85%", row 55). ``auto`` (``layout_labels``):
interior where the label covers at most a third of its mask, else beside, and never a label
touching another (a gap of at least ``min_gap``) or hiding more than ``MAX_HIDDEN`` of any
mask; a label with no such place goes to the nearest free place further out, with a thin
leader line to its object, or its mark is dropped with a note. Its size follows the image so
that it is still legible after the model's resize to 336x336.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from spatial_llava_ros.errors import InputError

FONT = cv2.FONT_HERSHEY_SIMPLEX
MODEL_SIDE = 336  # LLaVA-1.5's CLIP input side


@dataclass(frozen=True)
class LabelStyle:
    """Font geometry for one image size."""

    scale: float
    thickness: int
    outline: int  # total stroke width of the dark outline under the text
    pad: int

    def text_size(self, text: str) -> tuple[int, int]:
        """(width, height) of the label's footprint in pixels, outline and padding included."""
        (tw, th), base = cv2.getTextSize(text, FONT, self.scale, self.outline)
        return tw + 2 * self.pad, th + base + 2 * self.pad


def label_style(height: int, width: int, text_height_336: float = 14.0) -> LabelStyle:
    """Font for an image of this size whose digits are ``text_height_336`` px tall at 336x336.

    LLaVA-1.5 pads to a square and resizes to 336, so the shrink is max(H, W) / 336.
    """
    shrink = max(height, width) / MODEL_SIDE
    target = text_height_336 * shrink
    (_, base_h), _ = cv2.getTextSize('0', FONT, 1.0, 1)
    scale = max(0.3, target / base_h)
    thickness = max(1, int(round(scale * 1.6)))
    outline = thickness + max(2, int(round(scale * 2.2)))
    return LabelStyle(scale, thickness, outline, pad=max(1, int(round(scale))))


def _rect(anchor: tuple[int, int], size: tuple[int, int], shape: tuple[int, int]) -> tuple:
    """Label rectangle centred on ``anchor``, shifted to lie inside the image."""
    w, h = size
    x0 = int(anchor[0] - w // 2)
    y0 = int(anchor[1] - h // 2)
    x0 = min(max(x0, 0), max(shape[1] - w, 0))
    y0 = min(max(y0, 0), max(shape[0] - h, 0))
    return x0, y0, x0 + w, y0 + h


def _overlap_area(a: tuple, b: tuple) -> int:
    dx = min(a[2], b[2]) - max(a[0], b[0])
    dy = min(a[3], b[3]) - max(a[1], b[1])
    return dx * dy if dx > 0 and dy > 0 else 0


def iter_interior_candidates(mask: np.ndarray, box: tuple[int, int, int, int],
                             stride: int) -> Iterator[tuple[int, int]]:
    """Pixels of ``mask`` from most to least interior, thinned to one per ``stride``, one
    at a time: the first (most interior) point is usually free, and the sorted rest is then
    never built."""
    x0, y0, x1, y1 = box
    crop = np.zeros((y1 - y0 + 2, x1 - x0 + 2), np.uint8)
    crop[1:-1, 1:-1] = mask[y0:y1, x0:x1]
    dist = cv2.distanceTransform(crop, cv2.DIST_L2, 3)[1:-1, 1:-1]
    best = np.unravel_index(int(np.argmax(dist)), dist.shape)
    yield int(best[1]) + x0, int(best[0]) + y0
    stride = max(1, stride)
    grid = dist[::stride, ::stride]
    order = np.argsort(-grid, axis=None)
    rows, cols = np.unravel_index(order, grid.shape)
    for r, c in zip(rows[:200].tolist(), cols[:200].tolist()):
        if grid[r, c] <= 0:
            break
        yield c * stride + x0, r * stride + y0


PLACEMENTS = ('interior', 'beside', 'auto')
AUTO_COVER = 1 / 3  # auto: a label larger than this share of its mask goes beside
MAX_HIDDEN = 0.45  # auto: labels may hide at most this share of any mask (leaders: a little)
RINGS = 4  # auto: how many rings of half a label further out to search for a free place
MAX_LEADER = 2.0  # auto: the longest leader line, in label heights


def check_placement(placement: str) -> None:
    if placement not in PLACEMENTS:
        raise InputError(f'label_placement must be one of {list(PLACEMENTS)}, got {placement!r}')


def beside_candidates(box: tuple[int, int, int, int], size: tuple[int, int]
                      ) -> list[tuple[int, int]]:
    """Anchors whose label touches ``box`` from outside: above, below, left, right, then the
    corners, then the box centre (an object filling the frame), then a ring half a label
    further out (a crowded spot)."""
    x0, y0, x1, y1 = box
    w, h = size
    cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
    out = []
    for extra in (0, h // 2):
        ax, bx = x0 - w // 2 - 1 - extra, x1 + w // 2 + 1 + extra
        ay, by = y0 - h // 2 - 1 - extra, y1 + h // 2 + 1 + extra
        out += [(cx, ay), (cx, by), (ax, cy), (bx, cy), (ax, ay), (bx, ay), (ax, by), (bx, by)]
        out += [(x0 + w // 2, ay), (x1 - w // 2, ay), (x0 + w // 2, by), (x1 - w // 2, by)]
        if not extra:
            out.append((cx, cy))
    return out


def _box_sum(integral: np.ndarray, rect: tuple) -> int:
    x0, y0, x1, y1 = rect
    return int(integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0])


def _place_beside(masks: list[np.ndarray], boxes: list[tuple[int, int, int, int]],
                  texts: list[str], style: LabelStyle, order: list[int]
                  ) -> list[tuple[int, int]]:
    shape = masks[0].shape
    occupied = np.logical_or.reduce([m.astype(bool) for m in masks])
    integral = cv2.integral(occupied.astype(np.uint8))
    anchors: list[tuple[int, int]] = [(0, 0)] * len(masks)
    placed: list[tuple] = []
    for i in order:
        size = style.text_size(texts[i])
        gap = max(2, size[1] // 3)  # "1" touching "3" would read as 13
        best, best_cost = None, None
        for rank, cand in enumerate(beside_candidates(boxes[i], size)):
            rect = _rect(cand, size, shape)
            near = (rect[0] - gap, rect[1] - gap, rect[2] + gap, rect[3] + gap)
            # another label hidden or touched costs most, then object pixels, then distance
            cost = (4 * sum(_overlap_area(near, other) for other in placed)
                    + _box_sum(integral, rect) + rank)
            if best_cost is None or cost < best_cost:
                best, best_cost = rect, cost
        # the anchor of the label as drawn (clipped into the image): label_rect gives it back
        anchors[i] = (best[0] + size[0] // 2, best[1] + size[1] // 2)
        placed.append(best)
    return anchors


def place_labels(masks: list[np.ndarray], boxes: list[tuple[int, int, int, int]],
                 texts: list[str], style: LabelStyle, placement: str = 'interior'
                 ) -> list[tuple[int, int]]:
    """One anchor (u, v) per mask; labels do not overlap where the masks leave room.

    Small masks choose first: they have the fewest good spots.
    """
    check_placement(placement)
    shape = masks[0].shape if masks else (0, 0)
    anchors: list[tuple[int, int] | None] = [None] * len(masks)
    placed: list[tuple] = []
    order = sorted(range(len(masks)), key=lambda i: (boxes[i][2] - boxes[i][0])
                   * (boxes[i][3] - boxes[i][1]))
    if placement == 'beside' and masks:
        return _place_beside(masks, boxes, texts, style, order)
    for i in order:
        size = style.text_size(texts[i])
        best, best_cost = None, None
        for cand in iter_interior_candidates(masks[i], boxes[i], stride=max(2, min(size) // 2)):
            rect = _rect(cand, size, shape)
            cost = sum(_overlap_area(rect, other) for other in placed)
            if best_cost is None or cost < best_cost:
                best, best_cost = cand, cost
            if cost == 0:
                break
        anchors[i] = best
        placed.append(_rect(best, size, shape))
    return [a for a in anchors]  # type: ignore[misc]


def label_rect(anchor: tuple[int, int], text: str, style: LabelStyle,
               shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """The rectangle the drawn label occupies (x0, y0, x1, y1), for drawing and tests."""
    return _rect(anchor, style.text_size(text), shape)


@dataclass
class LabelLayout:
    """Where each label of a frame goes: ``anchors[i]`` None = mark i dropped (no free
    place); ``leaders[i]`` = ((u0, v0), (u1, v1)), a line from the label to its mask when
    the label sits off it (``auto`` only)."""

    anchors: list[tuple[int, int] | None]
    leaders: list[tuple[tuple[int, int], tuple[int, int]] | None]
    rects: list[tuple[int, int, int, int] | None]


def min_gap(size: tuple[int, int]) -> int:
    """Clearance between two labels: "1" touching "3" would read as 13."""
    return max(2, size[1] // 6)


def layout_labels(masks: list[np.ndarray], boxes: list[tuple[int, int, int, int]],
                  texts: list[str], style: LabelStyle, placement: str = 'interior'
                  ) -> LabelLayout:
    """``place_labels`` with leaders and drops: the engine's entry point."""
    check_placement(placement)
    shape = masks[0].shape if masks else (0, 0)
    if placement != 'auto' or not masks:
        anchors = place_labels(masks, boxes, texts, style, placement)
        return LabelLayout(list(anchors), [None] * len(masks),
                           [label_rect(a, t, style, shape) for a, t in zip(anchors, texts)])
    return _layout_auto(masks, boxes, texts, style)


def _ring_candidates(box: tuple[int, int, int, int], size: tuple[int, int]
                     ) -> list[tuple[int, int]]:
    """Anchors on rings further out than ``beside_candidates``, nearest ring first."""
    x0, y0, x1, y1 = box
    w, h = size
    cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
    out = []
    for ring in range(1, RINGS + 1):
        extra = ring * max(2, h // 2) + h // 2
        ax, bx = x0 - w // 2 - 1 - extra, x1 + w // 2 + 1 + extra
        ay, by = y0 - h // 2 - 1 - extra, y1 + h // 2 + 1 + extra
        out += [(cx, ay), (cx, by), (ax, cy), (bx, cy), (ax, ay), (bx, ay), (ax, by), (bx, by)]
    return out


def _inside(rect: tuple, size: tuple[int, int]) -> bool:
    """_rect clips into the image: a label that had to shrink or shift away is no place."""
    return rect[2] - rect[0] == size[0] and rect[3] - rect[1] == size[1]


def _leader(rect: tuple, xs: np.ndarray, ys: np.ndarray) -> tuple | None:
    """A line from the label's edge to the nearest of its mask's pixels (``xs``, ``ys``), or
    None when the label already touches the mask."""
    if not len(xs):
        return None
    cx, cy = (rect[0] + rect[2] - 1) / 2, (rect[1] + rect[3] - 1) / 2
    k = int(np.argmin((xs - cx) ** 2 + (ys - cy) ** 2))
    tx, ty = int(xs[k]), int(ys[k])
    sx = min(max(tx, rect[0]), rect[2] - 1)
    sy = min(max(ty, rect[1]), rect[3] - 1)
    if abs(sx - tx) <= 2 and abs(sy - ty) <= 2:
        return None
    return (sx, sy), (tx, ty)


class _AutoLayout:
    """State of one ``auto`` layout: who owns each pixel, how much of each mask is hidden,
    which rectangles are taken."""

    def __init__(self, masks, boxes) -> None:
        self.masks, self.boxes, self.n = masks, boxes, len(masks)
        self.owner = np.zeros(masks[0].shape, np.int32)  # 1 + mask index (masks are disjoint)
        for k, m in enumerate(masks):
            self.owner[m.astype(bool)] = k + 1
        self.areas = np.array([max(1, int(np.count_nonzero(m))) for m in masks], np.float64)
        self.hidden = np.zeros(self.n, np.float64)
        self.placed: list[tuple] = []
        self._pixels: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def pixels(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(xs, ys) of mask ``i``, found once: every candidate place off the mask needs them."""
        if i not in self._pixels:
            x0, y0, x1, y1 = self.boxes[i]
            ys, xs = np.nonzero(self.masks[i][y0:y1, x0:x1])
            self._pixels[i] = (xs + x0, ys + y0)
        return self._pixels[i]

    def try_place(self, i: int, rect: tuple, size: tuple[int, int]) -> tuple | None:
        """(pixels the label and its leader hide per mask, the leader) for mask ``i``'s label
        at ``rect``, or None where that place is not allowed."""
        if not _inside(rect, size):
            return None
        g = min_gap(size)
        near = (rect[0] - g, rect[1] - g, rect[2] + g, rect[3] + g)
        if any(_overlap_area(near, other) for other in self.placed):
            return None
        x0, y0, x1, y1 = rect
        cov = np.bincount(self.owner[y0:y1, x0:x1].ravel(), minlength=self.n + 1)[1:]
        leader = None if cov[i] else _leader(rect, *self.pixels(i))
        if leader is not None:
            (u0, v0), (u1, v1) = leader
            if (u1 - u0) ** 2 + (v1 - v0) ** 2 > (MAX_LEADER * size[1]) ** 2:
                return None  # too far from its object to be read as its number
            cov = cov + _line_cover(self.owner, leader, self.n)
        if np.any(self.hidden + cov / self.areas > MAX_HIDDEN):
            return None
        return cov, leader

    def choose(self, i: int, size: tuple[int, int]) -> tuple | None:
        """(rect, cover, leader): on the mask when the label is small enough for it, else
        beside it hiding the fewest object pixels, else the nearest free ring further out."""
        shape = self.owner.shape
        if size[0] * size[1] <= AUTO_COVER * self.areas[i]:
            stride = max(2, min(size) // 2)
            for cand in iter_interior_candidates(self.masks[i], self.boxes[i], stride):
                rect = _rect(cand, size, shape)
                ok = self.try_place(i, rect, size)
                if ok is not None:
                    return (rect, *ok)
        options = []
        for rank, cand in enumerate(beside_candidates(self.boxes[i], size)):
            rect = _rect(cand, size, shape)
            ok = self.try_place(i, rect, size)
            if ok is not None:
                options.append((int(ok[0].sum()), rank, rect, ok))
        if options:
            _, _, rect, ok = min(options, key=lambda o: (o[0], o[1]))
            return (rect, *ok)
        for cand in _ring_candidates(self.boxes[i], size):
            rect = _rect(cand, size, shape)
            ok = self.try_place(i, rect, size)
            if ok is not None:
                return (rect, *ok)
        return None


def _layout_auto(masks, boxes, texts, style) -> LabelLayout:
    n = len(masks)
    state = _AutoLayout(masks, boxes)
    layout = LabelLayout([None] * n, [None] * n, [None] * n)
    # largest first (as Set-of-Mark numbers them): when the frame runs out of room, the marks
    # left without a place are the small fragments, not the objects
    order = sorted(range(n), key=lambda i: -int(state.areas[i]))
    for i in order:
        choice = state.choose(i, style.text_size(texts[i]))
        if choice is None:
            continue  # dropped: no place keeps every label apart and every object visible
        rect, cov, leader = choice
        state.hidden += cov / state.areas
        state.placed.append(rect)
        layout.rects[i] = rect
        layout.anchors[i] = ((rect[0] + rect[2]) // 2, (rect[1] + rect[3]) // 2)
        layout.leaders[i] = leader
    return layout


def _line_cover(owner: np.ndarray, line: tuple, n: int) -> np.ndarray:
    """Pixels per mask under a leader line as drawn (3 px: a dark edge under 1 px white),
    drawn on the crop around the line only: this runs for every candidate place."""
    (u0, v0), (u1, v1) = line
    h, w = owner.shape
    x0, y0 = max(0, min(u0, u1) - 2), max(0, min(v0, v1) - 2)
    x1, y1 = min(w, max(u0, u1) + 3), min(h, max(v0, v1) + 3)
    canvas = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.line(canvas, (u0 - x0, v0 - y0), (u1 - x0, v1 - y0), 1, 3, cv2.LINE_8)
    return np.bincount(owner[y0:y1, x0:x1][canvas > 0], minlength=n + 1)[1:]
