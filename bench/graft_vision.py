"""Put one checkpoint's vision tower and projector under another checkpoint's language model.

Row 59 of docs/training.md: the beside-label ViT (bench/models/beside_stage1, trained from
the same tower as bench/models/atword_frozen) under the 0.571 model's language model reads
0.30 on beside-marked frames before any training, where the older LM under the same tower
had read 0.18 after 500 steps (row 57). The result takes the LM folder's files (prompt,
tokenizer) and the vision folder's ``som_settings.json``, so evaluation marks frames the way
its tower was trained.

    python bench/graft_vision.py --lm bench/models/atword_frozen/model \
        --vision bench/models/beside_stage1/model --out DIR
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

VISION_KEYS = ('vision_tower', 'multi_modal_projector')


def graft(lm_dir: Path, vision_dir: Path, out: Path) -> int:
    """Write the grafted checkpoint to ``out``; returns the number of tensors replaced."""
    from safetensors.torch import load_file, save_file

    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(lm_dir, out)
    weights = load_file(lm_dir / 'model.safetensors')
    vision = load_file(vision_dir / 'model.safetensors')
    n = 0
    for key in weights:
        if any(part in key for part in VISION_KEYS):
            if key not in vision or vision[key].shape != weights[key].shape:
                raise SystemExit(f'{vision_dir}: no tensor {key} of shape '
                                 f'{tuple(weights[key].shape)}')
            weights[key] = vision[key]
            n += 1
    save_file(weights, out / 'model.safetensors', metadata={'format': 'pt'})
    if (vision_dir / 'som_settings.json').exists():
        shutil.copy2(vision_dir / 'som_settings.json', out / 'som_settings.json')
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--lm', required=True, type=Path)
    ap.add_argument('--vision', required=True, type=Path)
    ap.add_argument('--out', required=True, type=Path)
    args = ap.parse_args()
    print(f'{args.out}: {graft(args.lm, args.vision, args.out)} tensors from {args.vision}')


if __name__ == '__main__':
    main()
