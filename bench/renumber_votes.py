"""Does asking under shuffled numbers and voting help? Top-1 with 1, 2, 4, ... renumberings.

The at-word models are trained with every frame's numbers shuffled (training/renumber.py),
so the same frame under another numbering is an input of the training distribution with
other answers. Each renumbering is scored, its probabilities are mapped back to the
engine's numbers, and the log-probabilities are summed over the first k numberings (the
first is the engine's own image, pixel for pixel). If the model's errors depend on the
numbers it sees, the vote removes some of them; if they come from the objects, it does not.

    python bench/renumber_votes.py --model DIR --seeds 90000:90200 --votes 8 --out F.json
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


SHIFTS = [(0, 0), (1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (-1, -1), (1, -1)]


def _shifted(image, v: int, px: int):
    """Vote ``v``'s image moved by up to ``px`` pixels (edges replicated): the patch grid
    then cuts the digits and objects elsewhere."""
    import cv2
    import numpy as np

    dx, dy = SHIFTS[v % len(SHIFTS)]
    if px <= 0 or (dx, dy) == (0, 0):
        return image
    m = np.float32([[1, 0, dx * px], [0, 1, dy * px]])
    return cv2.warpAffine(image, m, (image.shape[1], image.shape[0]),
                          borderMode=cv2.BORDER_REPLICATE)


def run(model: Path, seeds: list[int], votes: int, seed: int = 0, shift: int = 0,
        permute: bool = True) -> dict:
    from spatial_llava_ros.marks.placement import label_style
    from spatial_llava_ros.marks.render import draw_numbers
    from spatial_llava_ros.model.resolver import Resolver
    from spatial_llava_ros.training.renumber import shuffled_ids
    from spatial_llava_ros.training.synthetic import SomSettings, marked_scene

    settings = SomSettings.for_model(model)
    resolver = Resolver.from_pretrained(model)
    rng = random.Random(seed)
    ks = [k for k in (1, 2, 3, 4, 6, 8, 12, 16) if k <= votes]
    correct = {k: 0 for k in ks}
    correct_mean = {k: 0 for k in ks}
    by_rel: dict[str, dict[int, list[int]]] = {}
    n = 0
    same_image = 0
    t0 = time.time()
    for s in seeds:
        ms = marked_scene(s, settings, max_expressions=16, keep=True)
        if not ms.queries:
            continue
        rgb = ms.scene.frame.rgb
        h, w = rgb.shape[:2]
        style = label_style(h, w, settings.text_height_336)
        texts = [q for q, _, _ in ms.queries]
        total = [{m: 0.0 for m in ms.mark_ids} for _ in texts]
        mean = [{m: 0.0 for m in ms.mark_ids} for _ in texts]
        for v in range(votes):
            new = {m: m for m in ms.mark_ids} if v == 0 or not permute \
                else shuffled_ids(ms.mark_ids, rng)
            image = draw_numbers(rgb, {new[m]: a for m, a in ms.anchors.items()}, style,
                                 leaders=ms.leaders)
            image = _shifted(image, v, shift)
            if v == 0:
                same_image += int((image == ms.image).all())
            results = resolver.score_batch(image, ms.mark_ids, texts)
            resolver.forget_frames()
            for acc, avg, res in zip(total, mean, results):
                for m in ms.mark_ids:
                    acc[m] += math.log(max(res.scores[new[m]], 1e-30))
                    avg[m] += res.scores[new[m]]
            if v + 1 in correct:
                for (_, target, rel), acc, avg in zip(ms.queries, total, mean):
                    hit = int(max(acc, key=lambda m: (acc[m], -m)) == target)
                    correct[v + 1] += hit
                    correct_mean[v + 1] += int(max(avg, key=lambda m: (avg[m], -m)) == target)
                    by_rel.setdefault(rel, {k: [0, 0] for k in ks})[v + 1][0] += hit
                    by_rel[rel][v + 1][1] += 1
        n += len(ms.queries)
    return {'model': str(model), 'seeds': f'{min(seeds)}:{max(seeds) + 1}', 'queries': n,
            'first_vote_is_the_engine_image': f'{same_image} scenes',
            'shift_px': shift, 'permute': permute,
            'top1_matched_by_votes': {k: round(c / n, 4) for k, c in correct.items()},
            'top1_matched_by_votes_mean_prob': {k: round(c / n, 4)
                                                for k, c in correct_mean.items()},
            'per_relation': {r: {k: round(a / max(1, b), 4) for k, (a, b) in d.items()}
                             for r, d in sorted(by_rel.items())},
            'wall_s': round(time.time() - t0, 1)}


def main() -> int:
    from spatial_llava_ros.training.config import parse_seeds

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--model', required=True, type=Path)
    ap.add_argument('--seeds', default='90000:90200')
    ap.add_argument('--votes', type=int, default=8)
    ap.add_argument('--shift', type=int, default=0,
                    help='also move vote v>0 by up to this many pixels (0: no shift)')
    ap.add_argument('--no-permute', action='store_true',
                    help='keep the engine numbers in every vote (shifts alone)')
    ap.add_argument('--out', type=Path)
    args = ap.parse_args()
    report = run(args.model, parse_seeds(args.seeds), args.votes, shift=args.shift,
                 permute=not args.no_permute)
    emit(report, args.out)
    return 0


def emit(report: dict, out: Path | None) -> None:
    """Print the report as JSON and, with ``out``, write it there too."""
    text = json.dumps(report, indent=2)
    print(text)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + '\n', encoding='utf-8')


if __name__ == '__main__':
    sys.exit(main())
