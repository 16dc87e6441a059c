"""Renumbered marks: a training frame under shuffled numbers is a new lookup.

The marks engine numbers marks in reading order, so on a few thousand frames a model can
learn where numbers sit and which answer goes with which frame instead of reading the
numbers and looking the query up (docs/training.md, "Towards 85%", row 39 and T30-T31).
Redrawing a frame's labels with its numbers shuffled keeps the objects, the queries and the
label places, and changes every answer.
"""

from __future__ import annotations

import random

import numpy as np

from spatial_llava_ros.marks.placement import LabelStyle
from spatial_llava_ros.marks.render import draw_numbers
from spatial_llava_ros.training.dense import HEAD_NAMES, DenseTargets


def shuffled_ids(mark_ids: list[int], rng: random.Random) -> dict[int, int]:
    """Old id -> new id, a random permutation of the frame's own ids (the mark list the
    prompt shows stays the same)."""
    new = list(mark_ids)
    rng.shuffle(new)
    return dict(zip(mark_ids, new))


def renumber_dense(dense: np.ndarray, new: dict[int, int]) -> np.ndarray:
    """(heads, patches) targets with the mark and label rows renamed by ``new``."""
    out = dense.copy()
    lut = np.arange(max([int(dense.max()) + 1, *[v + 1 for v in new.values()]]))
    lut[list(new)] = list(new.values())
    for name in ('mark', 'label'):
        row = out[HEAD_NAMES.index(name)]
        on = row > 0
        row[on] = lut[row[on]]
    return out


def renumbered_frame(rgb: np.ndarray, anchors: dict[int, tuple[int, int]],
                     dense: DenseTargets | None, new: dict[int, int], label: LabelStyle,
                     leaders: list | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """The marked image redrawn from the unmarked ``rgb`` with each mark's number replaced
    by ``new[mark]`` at its label anchor (leader lines as they were), and its marked dense
    targets to match."""
    image = draw_numbers(rgb, {new[m]: a for m, a in anchors.items()}, label,
                         leaders=leaders)
    return image, (renumber_dense(dense.marked, new) if dense is not None else None)
