"""Ask under several numberings of the same marks and vote: fewer errors from the numbers.

A model trained with every frame's numbers shuffled (``data.renumber_marks``) has learned to
read a number and look the query up, but each reading is noisy: a "3" half hidden by a
leader line, a number the model tends to prefer. The same frame redrawn with its numbers
permuted is an input of the training distribution whose right answer is known in the
engine's numbering, so scoring it under ``votes`` numberings (the first one the engine's
own image, pixel for pixel), mapping each answer back and summing the log-probabilities
averages those readings out. On the at-word candidate it lifts held-out top-1 by about
seven points at 8 votes (docs/training.md, "Towards 85%"); it costs one prefix pass per
vote.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import numpy as np

from spatial_llava_ros.errors import InputError
from spatial_llava_ros.marks.placement import LabelStyle, label_style
from spatial_llava_ros.marks.render import draw_numbers

MAX_VOTES = 64


@dataclass
class Renumberable:
    """What redrawing a marked frame under other numbers needs: the unmarked image and
    where each number was drawn (``marks.types.Mark.anchor``; leaders as drawn)."""

    rgb: np.ndarray
    anchors: dict[int, tuple[int, int]]
    label: LabelStyle
    leaders: list = field(default_factory=list)

    @classmethod
    def from_marked(cls, marked, text_height_336: float) -> Renumberable:
        """From a ``marks.types.MarkedFrame`` drawn with digits ``text_height_336`` tall."""
        h, w = marked.rgb.shape[:2]
        return cls(marked.rgb, {int(m.mark_id): (int(m.anchor[0]), int(m.anchor[1]))
                                for m in marked.marks},
                   label_style(h, w, text_height_336),
                   [m.leader for m in marked.marks if m.leader is not None])

    def image(self, new: dict[int, int]) -> np.ndarray:
        """The frame with mark ``m`` drawn as ``new[m]`` (identity: the engine's image)."""
        return draw_numbers(self.rgb, {new[m]: a for m, a in self.anchors.items()},
                            self.label, leaders=self.leaders)


def check_votes(votes) -> int:
    if isinstance(votes, bool) or not isinstance(votes, int) or not 1 <= votes <= MAX_VOTES:
        raise InputError(f'renumber votes must be an integer in [1, {MAX_VOTES}], got {votes!r}')
    return votes


def numberings(mark_ids: list[int], votes: int, seed: int = 0) -> list[dict[int, int]]:
    """``votes`` maps old id -> drawn id: the identity first, then seeded permutations of
    the frame's own ids (the mark list in the prompt stays the same), so a frame always
    gets the same votes."""
    ids = [int(m) for m in mark_ids]
    out = [{m: m for m in ids}]
    rng = random.Random(seed * 1_000_003 + sum(ids) * 31 + len(ids))
    for _ in range(votes - 1):
        new = list(ids)
        rng.shuffle(new)
        out.append(dict(zip(ids, new)))
    return out


def score_with_votes(resolver, frame: Renumberable, mark_ids: list[int], queries: list[str],
                     votes: int, seed: int = 0) -> list:
    """One ``Resolution`` per query, from ``votes`` numberings of ``frame`` combined (the
    probabilities are the normalised product of each numbering's, in the engine's ids)."""
    from spatial_llava_ros.model.resolver import Resolution

    votes = check_votes(votes)
    ids = [int(m) for m in mark_ids]
    missing = [m for m in ids if m not in frame.anchors]
    if missing:
        raise InputError(f'marks {missing} have no label anchor to redraw them at')
    total = [dict.fromkeys(ids, 0.0) for _ in queries]
    lls = [dict.fromkeys(ids, 0.0) for _ in queries]
    # the numberings are fixed per frame, so the resolver's frame cache also serves the
    # permuted images of a follow-up query
    for new in numberings(ids, votes, seed):
        results = resolver.score_batch(frame.image(new), ids, queries)
        for acc, ll, res in zip(total, lls, results):
            for m in ids:
                acc[m] += math.log(max(float(res.scores[new[m]]), 1e-30))
                ll[m] += float(res.log_likelihoods.get(new[m], 0.0)) / votes
    threshold = float(getattr(resolver, 'abstain_threshold', 0.0))
    out = []
    for q, acc, ll in zip(queries, total, lls):
        top = max(acc.values())
        weights = {m: math.exp(v - top) for m, v in acc.items()}
        norm = sum(weights.values())
        scores = {m: w / norm for m, w in weights.items()}
        ranked = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))
        best, conf = ranked[0]
        abstained = conf < threshold
        reason = (f'best mark {best} has p={conf:.3f} < threshold {threshold:.3f} over '
                  f'{len(ids)} marks ({votes} numberings)' if abstained else '')
        out.append(Resolution(query=q, best_id=None if abstained else best, confidence=conf,
                              scores=scores, ranked=ranked, abstained=abstained,
                              reason=reason, log_likelihoods=ll,
                              scoring=f'votes:{votes}'))
    return out
