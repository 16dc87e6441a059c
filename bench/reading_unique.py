"""Reading the marks: "the lamp" where the frame has one lamp, its mark to be named.

A query naming a category that only one object of the frame has needs no relation: the
model has to find the object and read the number drawn on it. Top-1 on these is the
reading figure of issue 13 (>= 0.95 wanted), with one vote and with the model's votes
(model/votes.py). Targets the marks engine did not mark are left out (nothing to read).

    python bench/reading_unique.py --model DIR --seeds 0:300 --votes 8 --out F.json
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def run(model: Path, seeds: list[int], votes: int) -> dict:
    from spatial_llava_ros.model.resolver import Resolver
    from spatial_llava_ros.model.votes import Renumberable, score_with_votes
    from spatial_llava_ros.scene.expressions import display_name
    from spatial_llava_ros.training.synthetic import SomSettings, marked_scene

    settings = SomSettings.for_model(model)
    resolver = Resolver.from_pretrained(model)
    hits = {1: 0, votes: 0}
    per_cat: dict[str, Counter] = {}
    n = 0
    t0 = time.time()
    for s in seeds:
        ms = marked_scene(s, settings, max_expressions=16, keep=True)
        cats = Counter(o.category for o in ms.scene.objects)
        asks = [(f'the {display_name(o.category)}', ms.marks_of[o.instance_id], o.category)
                for o in ms.scene.objects
                if cats[o.category] == 1 and o.instance_id in ms.marks_of]
        if not asks:
            continue
        texts = [q for q, _, _ in asks]
        frame = Renumberable.from_marked(ms.marked, settings.text_height_336)
        for k in sorted(hits):
            res = score_with_votes(resolver, frame, ms.mark_ids, texts, k)
            for (_, target, cat), r in zip(asks, res):
                hit = int(r.best_id == target)
                hits[k] += hit
                per_cat.setdefault(cat, Counter())[f'votes_{k}'] += hit
        for _, _, cat in asks:
            per_cat[cat]['n'] += 1
        n += len(asks)
        resolver.forget_frames()
    return {'model': str(model), 'seeds': f'{min(seeds)}:{max(seeds) + 1}', 'queries': n,
            'top1_by_votes': {k: round(v / max(1, n), 4) for k, v in hits.items()},
            'per_category': {c: {k: (v if k == 'n' else round(v / max(1, d['n']), 3))
                                 for k, v in d.items()} for c, d in sorted(per_cat.items())},
            'wall_s': round(time.time() - t0, 1)}


def main() -> int:
    from spatial_llava_ros.training.config import parse_seeds

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--model', required=True, type=Path)
    ap.add_argument('--seeds', default='0:300')
    ap.add_argument('--votes', type=int, default=8)
    ap.add_argument('--out', type=Path)
    args = ap.parse_args()
    report = run(args.model, parse_seeds(args.seeds), args.votes)
    from renumber_votes import emit  # bench/ is on the path when run as a script

    emit(report, args.out)
    return 0


if __name__ == '__main__':
    sys.exit(main())
