"""What can the language model read from a trained vision tower? Ceilings from its own heads.

bench/oracle_ceiling.py measures the colour-query ceiling of the dense *ground truth*. This
script measures the same ceiling from what a trained model's image tokens carry: the
trainer's linear dense heads (dense_heads.pt) on the model's projected image features, argmax
per patch, on held-out engine-marked frames. If a colour query ("the purple chair") cannot be
answered by the majority predicted mark among the patches predicted to be a purple chair, the
language model on top has to do better than a linear read-out of its tokens, or the vision
side is what holds the answer back.

    python bench/dense_ceiling.py --model bench/models/atword_frozen/model \
        --heads bench/models/atword_frozen/dense_heads.pt --seeds 0:200 --out F.json
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path

import numpy as np
import torch

from spatial_llava_ros.scene.catalog import CATEGORIES, COLORS
from spatial_llava_ros.training.dense import HEAD_NAMES, HEADS, DenseHeads, image_features


def _color_target(query: str) -> tuple[int, int]:
    words = query.split()  # "the COLOUR CATEGORY WORDS"
    return list(COLORS).index(words[1]) + 1, list(CATEGORIES).index('_'.join(words[2:])) + 1


def color_ceiling(dense: np.ndarray, queries) -> tuple[int, int, int]:
    """(colour queries, answered right by the majority mark, no patch matches)."""
    ci, ki, mi = (HEAD_NAMES.index(h) for h in ('category', 'color', 'mark'))
    n = right = missing = 0
    for query, mark, rel in queries:
        if rel != 'color':
            continue
        k, c = _color_target(query)
        marks = [m for m in dense[mi][(dense[ci] == c) & (dense[ki] == k)].tolist() if m > 0]
        n += 1
        if not marks:
            missing += 1
        else:
            right += collections.Counter(marks).most_common(1)[0][0] == mark
    return n, right, missing


def predicted(heads: DenseHeads, feats: torch.Tensor) -> np.ndarray:
    """(heads, patches) argmax class ids for one frame's (patches, D) features."""
    logits = heads.proj(feats.float()).split(heads.sizes, dim=-1)
    return torch.stack([lg.argmax(-1) for lg in logits]).numpy()


def main() -> None:
    from spatial_llava_ros.model.image import pixel_values
    from spatial_llava_ros.model.loading import load_model
    from spatial_llava_ros.training.config import parse_seeds
    from spatial_llava_ros.training.synthetic import SomSettings, training_frame

    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--model', type=Path, required=True)
    ap.add_argument('--heads', type=Path, required=True, help="the trainer's dense_heads.pt")
    ap.add_argument('--seeds', default='0:200')
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--out', type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    loaded = load_model(args.model, device='cpu', dtype='float32')
    llava = loaded.model.eval()
    settings = SomSettings.for_model(args.model)
    grid = llava.config.vision_config.image_size // llava.config.vision_config.patch_size
    heads = DenseHeads(llava.config.text_config.hidden_size)
    heads.load_state_dict(torch.load(args.heads, map_location='cpu'))
    counts = {'gt': [0, 0, 0], 'pred': [0, 0, 0]}
    hits: dict[str, list[float]] = collections.defaultdict(list)
    for seed in parse_seeds(args.seeds):
        f = training_frame(seed, settings, 40, grid, dense=True, free=False)
        if not f.queries:
            continue
        with torch.no_grad():
            pix = pixel_values(loaded.processor.image_processor, f.image)
            feats = image_features(llava, pix.float())[0]
        gt, pr = f.dense.marked, predicted(heads, feats)
        for name, d in (('gt', gt), ('pred', pr)):
            for i, v in enumerate(color_ceiling(d, f.queries)):
                counts[name][i] += v
        for h, name in enumerate(HEAD_NAMES):
            t = gt[h]
            on = t > 0 if name in ('label', 'mark', 'category', 'color') else t >= 0
            if on.any():
                hits[name].append(float((pr[h][on] == t[on]).mean()))
    result = {'model': str(args.model), 'seeds': args.seeds, 'grid': grid,
              'head_accuracy_fg': {k: round(float(np.mean(v)), 3) for k, v in hits.items()
                                   if k in HEADS}}
    for name, (n, right, missing) in counts.items():
        result[f'color_majority_{name}'] = round(right / max(n, 1), 3)
        result[f'color_no_patch_{name}'] = round(missing / max(n, 1), 3)
    result['color_queries'] = counts['gt'][0]
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + '\n')


if __name__ == '__main__':
    main()
