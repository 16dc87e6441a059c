"""Which proposals keep a number when a frame has more than ``max_marks``: objects before
fragments.

On real frames the depth and colour sources propose far more regions than the 40-mark cap
(95 over it on the Middlebury motorcycle, 110 on a photograph), and most are background
pieces: floor patches, wall and shelf edges, slivers. Every such proposal scores 1.0, so
the cap used to keep the largest, which are the background. ``objectness`` ranks them by
what a whole object looks like: a moderate share of the frame, a compact shape that fills
its box and is not a thin strip, no contact with the image border, and (with depth) a
narrow depth range, where a floor or wall patch spans metres.
"""

from __future__ import annotations

import math

import numpy as np


def objectness(mask: np.ndarray, box: tuple[int, int, int, int],
               depth: np.ndarray | None = None, border_margin: int = 2) -> float:
    """A score in about [-3, 2]; higher = more like a whole object."""
    h, w = mask.shape
    x0, y0, x1, y1 = box
    crop = mask[y0:y1, x0:x1]
    area = int(np.count_nonzero(crop))
    if area == 0:
        return -math.inf
    share = area / float(h * w)
    # size: best between 0.3 % and 8 % of the frame, falling off in log scale either side
    lo, hi = math.log(0.003), math.log(0.08)
    s = math.log(share)
    size = 1.0 - max(0.0, lo - s, s - hi) / 2.0
    bw, bh = max(1, x1 - x0), max(1, y1 - y0)
    fill = area / float(bw * bh)  # ragged regions fill little of their box
    # strips and edges: long and thin (a bottle at 1:3 loses 0.3, a shelf edge at 1:30 0.9)
    thin = 0.6 * math.log10(max(bw, bh) / min(bw, bh)) + (0.5 if min(bw, bh) < 6 else 0.0)
    edges = sum((x0 <= border_margin, y0 <= border_margin, x1 >= w - border_margin,
                 y1 >= h - border_margin))
    score = size + fill - thin - 0.5 * edges
    if depth is not None:
        z = depth[y0:y1, x0:x1][crop]
        z = z[np.isfinite(z) & (z > 0)]
        if z.size >= 8:
            p10, p50, p90 = np.percentile(z, (10, 50, 90))
            score -= min(2.0, 2.0 * (p90 - p10) / max(p50, 1e-3))  # floors and walls recede
    return float(score)
