"""Drawing marks on the image the model sees.

Four styles, all with the number: ``number`` (number only), ``contour`` (number +
mask outline), ``box`` (number + bounding box), ``tint`` (number + translucent mask
fill + outline). Numbers are white with a black outline, so they read on any colour.
"""

from __future__ import annotations

import colorsys

import cv2
import numpy as np

from spatial_llava_ros.errors import InputError
from spatial_llava_ros.marks.placement import FONT, LabelStyle, label_rect
from spatial_llava_ros.marks.types import Mark

STYLES = ('number', 'contour', 'box', 'tint')


def mark_color(mark_id: int) -> tuple[int, int, int]:
    """A saturated RGB colour per id; the golden-ratio hue step keeps neighbours apart."""
    hue = (mark_id * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 1.0)
    return int(r * 255), int(g * 255), int(b * 255)


def check_style(style: str) -> str:
    if style not in STYLES:
        raise InputError(f'unknown mark style {style!r}; choose one of {", ".join(STYLES)}')
    return style


def draw_marks(rgb: np.ndarray, marks: list[Mark], style: str,
               label: LabelStyle, tint_alpha: float = 0.35) -> np.ndarray:
    """A copy of ``rgb`` with every mark drawn in ``style``; numbers go on top of everything."""
    check_style(style)
    out = np.ascontiguousarray(rgb.copy())
    h, w = out.shape[:2]
    line = max(1, int(round(label.scale * 1.2)))
    for m in marks:
        color = mark_color(m.mark_id)
        x0, y0, x1, y1 = m.box
        if x1 <= x0 or y1 <= y0:
            continue
        if style == 'tint':
            sub = out[y0:y1, x0:x1]
            msk = m.mask[y0:y1, x0:x1]
            blend = sub[msk].astype(np.float32) * (1 - tint_alpha) \
                + np.array(color, np.float32) * tint_alpha
            sub[msk] = blend.round().astype(np.uint8)
        if style in ('contour', 'tint'):
            crop = m.mask[y0:y1, x0:x1].astype(np.uint8)
            contours, _ = cv2.findContours(crop, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE,
                                           offset=(x0, y0))
            cv2.drawContours(out, contours, -1, color, line, cv2.LINE_AA)
        elif style == 'box':
            cv2.rectangle(out, (x0, y0), (x1 - 1, y1 - 1), color, line, cv2.LINE_AA)
    return draw_numbers(out, {m.mark_id: m.anchor for m in marks}, label, copy=False,
                        leaders=[m.leader for m in marks if m.leader is not None])


def draw_numbers(rgb: np.ndarray, anchors: dict[int, tuple[int, int]], label: LabelStyle,
                 copy: bool = True, leaders: list | None = None) -> np.ndarray:
    """Each number (mark id -> label anchor) drawn at its label, after the leader lines
    (white on a dark edge, 1 px) of labels that sit off their object; the trainer redraws a
    frame's numbers shuffled with this (training/renumber.py)."""
    out = np.ascontiguousarray(rgb.copy()) if copy else rgb
    h, w = out.shape[:2]
    for a, b in leaders or ():
        cv2.line(out, tuple(a), tuple(b), (0, 0, 0), 3, cv2.LINE_8)
        cv2.line(out, tuple(a), tuple(b), (255, 255, 255), 1, cv2.LINE_8)
    for mark_id, anchor in anchors.items():
        text = str(mark_id)
        rx0, ry0, rx1, ry1 = label_rect(anchor, text, label, (h, w))
        (tw, th), base = cv2.getTextSize(text, FONT, label.scale, label.thickness)
        org = (rx0 + (rx1 - rx0 - tw) // 2, ry0 + (ry1 - ry0 + th) // 2)
        cv2.putText(out, text, org, FONT, label.scale, (0, 0, 0), label.outline, cv2.LINE_AA)
        cv2.putText(out, text, org, FONT, label.scale, (255, 255, 255), label.thickness,
                    cv2.LINE_AA)
    return out
