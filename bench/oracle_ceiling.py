"""How perfect are the oracle's "perfect" image tokens? Ceilings from the dense ground truth.

bench/oracle_lm.py feeds the LM one token per patch with that patch's dense ground truth
(training/dense.py): the one object under most of the patch, its mark, category, colour and
ranks. A patch holds one object, so small objects can vanish and a mark can be split or
shared; this script measures what an LM reading those tokens could get at best, on the
validation frames of an oracle frames cache:

- ``mark_on_a_patch``: the target's mark is on at least one patch (any query kind);
- colour queries ("the purple chair"): the majority mark among the patches whose category and
  colour are the query's is the target (``color_majority``), and how often no patch has them.

    python bench/oracle_ceiling.py runs/oracle/frames_1500_g8.pt runs/oracle/frames_1500.pt
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from dense_ceiling import color_ceiling  # bench/: the same ceiling on a model's heads

from spatial_llava_ros.training.dense import HEAD_NAMES


def ceilings(frames) -> dict[str, float]:
    mi = HEAD_NAMES.index('mark')
    n = on_patch = n_color = majority = missing = 0
    for f in frames:
        d = f.dense.marked
        n += len(f.queries)
        on_patch += sum(bool((d[mi] == mark).any()) for _, mark, _ in f.queries)
        k, right, none = color_ceiling(d, f.queries)
        n_color, majority, missing = n_color + k, majority + right, missing + none
    return {'queries': n, 'mark_on_a_patch': round(on_patch / n, 3),
            'color_queries': n_color, 'color_majority': round(majority / n_color, 3),
            'color_no_patch': round(missing / n_color, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('caches', nargs='+', type=Path, help="oracle_lm.py's frames_*.pt files")
    ap.add_argument('--out', type=Path, default=None, help='write the figures as JSON')
    args = ap.parse_args()
    result = {}
    for path in args.caches:
        _, val = torch.load(path, weights_only=False)
        val = [f for f in val if f.queries and f.dense is not None]
        result[path.name] = {'patches': int(val[0].dense.marked.shape[1]), **ceilings(val)}
        print(path.name, result[path.name], flush=True)
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + '\n')


if __name__ == '__main__':
    main()
