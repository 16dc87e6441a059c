"""Where each number goes and how big it is.

``interior`` (the default): the number sits at the most interior point of its mask (the
maximum of the distance transform) so it is read as belonging to that object, and moves to
the next most interior free spot when it would cover another number. ``beside``: the number
sits just outside its object's box, where it covers the fewest object pixels and no other
number, so that a label as large as the object does not hide what the query names (its
category and colour; docs/training.md, "Towards 85%", row 55). Its size follows the image so
that it is still legible after the model's resize to 336x336.
"""

from __future__ import annotations

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


def interior_candidates(mask: np.ndarray, box: tuple[int, int, int, int],
                        stride: int) -> list[tuple[int, int]]:
    """Pixels of ``mask`` ordered from most to least interior, thinned to one per ``stride``."""
    x0, y0, x1, y1 = box
    crop = np.zeros((y1 - y0 + 2, x1 - x0 + 2), np.uint8)
    crop[1:-1, 1:-1] = mask[y0:y1, x0:x1]
    dist = cv2.distanceTransform(crop, cv2.DIST_L2, 3)[1:-1, 1:-1]
    best = np.unravel_index(int(np.argmax(dist)), dist.shape)
    out = [(int(best[1]) + x0, int(best[0]) + y0)]
    stride = max(1, stride)
    grid = dist[::stride, ::stride]
    order = np.argsort(-grid, axis=None)
    rows, cols = np.unravel_index(order, grid.shape)
    for r, c in zip(rows[:200], cols[:200]):
        if grid[r, c] <= 0:
            break
        out.append((int(c) * stride + x0, int(r) * stride + y0))
    return out


PLACEMENTS = ('interior', 'beside')


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
        cands = interior_candidates(masks[i], boxes[i], stride=max(2, min(size) // 2))
        best, best_cost = cands[0], None
        for cand in cands:
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
