"""Where a model's wrong answers go: the right category (wrong instance) or another one.

A wrong answer on "the chair left of the table" that names another chair means the model
found the category and missed the relation; one that names a table (the anchor) or a mug
means it did not find the target's category at all. The split says which half of the
lookup the next recipe should spend its steps on.

    python bench/failure_modes.py --model DIR --seeds 0:200 --out F.json
"""

from __future__ import annotations

import argparse
import json
from collections import Counter, defaultdict
from pathlib import Path


def classify(ms, query_expr, predicted_mark: int) -> str:
    """correct | same_category | anchor | other_category | no_object (a fragment's mark)."""
    target_mark = ms.marks_of[query_expr.target_id]
    if predicted_mark == target_mark:
        return 'correct'
    inst_of = {m: i for i, m in ms.marks_of.items()}
    inst = inst_of.get(predicted_mark)
    if inst is None:
        return 'no_object'
    objects = {o.instance_id: o for o in ms.scene.objects}
    if inst in query_expr.landmark_ids:
        return 'anchor'
    if objects[inst].category == objects[query_expr.target_id].category:
        return 'same_category'
    return 'other_category'


def failure_modes(model: Path, seeds: list[int]) -> dict:
    from spatial_llava_ros.model.resolver import Resolver
    from spatial_llava_ros.training.synthetic import SomSettings, marked_scene

    settings = SomSettings.for_model(model)
    resolver = Resolver.from_pretrained(model)
    per: dict[str, Counter] = defaultdict(Counter)
    per_cat: dict[str, Counter] = defaultdict(Counter)
    for seed in seeds:
        ms = marked_scene(seed, settings, max_expressions=16, keep=True)
        exprs = [e for e in ms.scene.expressions if e.target_id in ms.marks_of]
        if not exprs:
            continue
        results = resolver.score_batch(ms.image, ms.mark_ids, [e.text for e in exprs])
        category = {o.instance_id: o.category for o in ms.scene.objects}
        for e, res in zip(exprs, results):
            kind = classify(ms, e, res.best_id)
            per[e.relation][kind] += 1
            per_cat[category[e.target_id]][kind] += 1
        resolver.forget_frames()
    total: Counter = Counter()
    for c in per.values():
        total.update(c)
    share = {k: round(v / sum(total.values()), 4) for k, v in sorted(total.items())}
    return {'model': str(model), 'seeds': f'{min(seeds)}:{max(seeds) + 1}',
            'all': share, 'counts': dict(total),
            'per_relation': {r: {k: round(v / sum(c.values()), 3) for k, v in sorted(c.items())}
                             for r, c in sorted(per.items())},
            'per_target_category': {
                k: {'n': sum(c.values()), 'correct': round(c['correct'] / sum(c.values()), 3),
                    'other_category': round(c['other_category'] / sum(c.values()), 3)}
                for k, c in sorted(per_cat.items())}}


def main() -> None:
    from spatial_llava_ros.training.config import parse_seeds

    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--model', required=True, type=Path)
    ap.add_argument('--seeds', default='0:200')
    ap.add_argument('--out', type=Path)
    args = ap.parse_args()
    report = failure_modes(args.model, parse_seeds(args.seeds))
    text = json.dumps(report, indent=1)
    if args.out:
        args.out.write_text(text + '\n', encoding='utf-8')
    print(text)


if __name__ == '__main__':
    main()
