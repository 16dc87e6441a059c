"""Do mirrored votes help beyond renumbered ones? Top-1 with k votes, half of them mirrored.

A mirrored frame is another scene of the test-bed's kind: the same objects, left and right
exchanged. Its marks are redrawn upright at the mirrored label anchors (digits are not
mirrored) and the query has "left" and "right" swapped ("the leftmost mug" becomes "the
rightmost mug"); every other relation the test-bed asks is unchanged by a mirror. The patch
grid then cuts every object and digit elsewhere, and the model's left/right errors are no
longer the same errors. Votes alternate: the engine's image, its mirror, then renumberings
of each, so k votes compare with ``renumber_votes.py``'s k votes at the same cost.

    python bench/flip_votes.py --model DIR --seeds 90000:90200 --votes 8 --out F.json
"""

from __future__ import annotations

import argparse
import math
import random
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from renumber_votes import emit  # noqa: E402

_SIDE = re.compile(r'\b(left|right)(most)?\b')


def mirror_query(text: str) -> str:
    """The query for the mirrored frame: 'left' <-> 'right' (also in leftmost/rightmost)."""
    return _SIDE.sub(lambda m: ('right' if m.group(1) == 'left' else 'left')
                     + (m.group(2) or ''), text)


def run(model: Path, seeds: list[int], votes: int, seed: int = 0) -> dict:
    from spatial_llava_ros.marks.placement import label_style
    from spatial_llava_ros.marks.render import draw_numbers
    from spatial_llava_ros.model.resolver import Resolver
    from spatial_llava_ros.training.renumber import shuffled_ids
    from spatial_llava_ros.training.synthetic import SomSettings, marked_scene

    settings = SomSettings.for_model(model)
    resolver = Resolver.from_pretrained(model)
    rng = random.Random(seed)
    ks = [k for k in (1, 2, 4, 6, 8, 12, 16) if k <= votes]
    correct = {k: 0 for k in ks}
    plain_only = {k: 0 for k in ks}  # the same k, mirrored votes left out (k/2 plain ones)
    by_rel: dict[str, dict[int, list[int]]] = {}
    n = 0
    t0 = time.time()
    for s in seeds:
        ms = marked_scene(s, settings, max_expressions=16, keep=True)
        if not ms.queries:
            continue
        rgb = ms.scene.frame.rgb
        h, w = rgb.shape[:2]
        style = label_style(h, w, settings.text_height_336)
        flipped_rgb = rgb[:, ::-1].copy()
        mirror = {m: (w - 1 - a[0], a[1]) for m, a in ms.anchors.items()}
        mirror_leaders = [((w - 1 - a[0], a[1]), (w - 1 - b[0], b[1])) for a, b in ms.leaders]
        texts = [q for q, _, _ in ms.queries]
        mirrored_texts = [mirror_query(q) for q in texts]
        total = [{m: 0.0 for m in ms.mark_ids} for _ in texts]
        plain = [{m: 0.0 for m in ms.mark_ids} for _ in texts]
        for v in range(votes):
            flip = v % 2 == 1
            new = {m: m for m in ms.mark_ids} if v < 2 else shuffled_ids(ms.mark_ids, rng)
            if flip:
                image = draw_numbers(flipped_rgb, {new[m]: a for m, a in mirror.items()},
                                     style, leaders=mirror_leaders)
            else:
                image = draw_numbers(rgb, {new[m]: a for m, a in ms.anchors.items()}, style,
                                     leaders=ms.leaders)
            results = resolver.score_batch(image, ms.mark_ids,
                                           mirrored_texts if flip else texts)
            resolver.forget_frames()
            for acc, pl, res in zip(total, plain, results):
                for m in ms.mark_ids:
                    lp = math.log(max(res.scores[new[m]], 1e-30))
                    acc[m] += lp
                    if not flip:
                        pl[m] += lp
            if v + 1 in correct:
                for (_, target, rel), acc, pl in zip(ms.queries, total, plain):
                    hit = int(max(acc, key=lambda m: (acc[m], -m)) == target)
                    correct[v + 1] += hit
                    plain_only[v + 1] += int(max(pl, key=lambda m: (pl[m], -m)) == target)
                    by_rel.setdefault(rel, {k: [0, 0] for k in ks})[v + 1][0] += hit
                    by_rel[rel][v + 1][1] += 1
        n += len(ms.queries)
    return {'model': str(model), 'seeds': f'{min(seeds)}:{max(seeds) + 1}', 'queries': n,
            'votes_alternate': 'engine image, mirror, then renumberings of each',
            'top1_matched_by_votes': {k: round(c / n, 4) for k, c in correct.items()},
            'top1_matched_plain_votes_only': {k: round(c / n, 4)
                                              for k, c in plain_only.items()},
            'per_relation': {r: {k: round(a / max(1, b), 4) for k, (a, b) in d.items()}
                             for r, d in sorted(by_rel.items())},
            'wall_s': round(time.time() - t0, 1)}


def main() -> int:
    from spatial_llava_ros.training.config import parse_seeds

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--model', required=True, type=Path)
    ap.add_argument('--seeds', default='90000:90200')
    ap.add_argument('--votes', type=int, default=8)
    ap.add_argument('--out', type=Path)
    args = ap.parse_args()
    emit(run(args.model, parse_seeds(args.seeds), args.votes), args.out)
    return 0


if __name__ == '__main__':
    sys.exit(main())
