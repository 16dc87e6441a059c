"""Grow a trained checkpoint's language model deeper without changing what it computes.

The at-word lookup learnt by the 3-layer LM (docs/training.md, rows 52-58) levels off near
0.54 validation accuracy; a relation such as "the chair left of the table" needs the answer
position to find the anchor, then the target relative to it, which is several hops for three
layers. Training a deeper LM from scratch would repeat the ~3,500-step plateau before the
lookup starts (row 52), so this script inserts new decoder layers whose output projections
(attention ``o_proj`` and MLP ``down_proj``) are zero: each new layer adds nothing to the
residual stream, the grown model scores every query exactly as the old one, and training
then decides what the new layers do.

    python bench/grow_lm.py --model bench/models/atword_frozen/model --out DIR --add 3 \
        [--where end|interleave]

Everything else in the folder (tokenizer, processor, prompt.yaml, ...) is copied as is.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import torch


def grown_order(old_layers: int, add: int, where: str) -> list[int | None]:
    """New layer list: an old layer's index, or None for a new (identity) layer."""
    if where == 'end':
        return list(range(old_layers)) + [None] * add
    order: list[int | None] = []
    for i in range(old_layers):  # one new layer after each of the last ``add`` old ones
        order.append(i)
        if i >= old_layers - add:
            order.append(None)
    order += [None] * max(0, add - old_layers)
    return order


def grow(model_dir: Path, out: Path, add: int, where: str = 'end', seed: int = 0) -> Path:
    from transformers import LlavaForConditionalGeneration

    torch.manual_seed(seed)
    old = LlavaForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32)
    cfg = old.config
    n_old = cfg.text_config.num_hidden_layers
    order = grown_order(n_old, add, where)
    cfg.text_config.num_hidden_layers = len(order)
    new = LlavaForConditionalGeneration(cfg)
    old_sd = old.state_dict()
    new_sd = new.state_dict()
    prefix = 'model.language_model.layers.'
    for key in new_sd:
        if not key.startswith(prefix):
            new_sd[key] = old_sd[key].clone()
            continue
        idx, rest = key[len(prefix):].split('.', 1)
        src = order[int(idx)]
        if src is not None:
            new_sd[key] = old_sd[f'{prefix}{src}.{rest}'].clone()
        elif rest.endswith(('o_proj.weight', 'down_proj.weight')):
            new_sd[key] = torch.zeros_like(new_sd[key])  # the new layer starts as identity
    new.load_state_dict(new_sd)
    out.mkdir(parents=True, exist_ok=True)
    for f in model_dir.iterdir():
        if f.is_file() and f.name not in ('model.safetensors', 'config.json'):
            shutil.copy2(f, out / f.name)
    new.save_pretrained(out)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--model', required=True, type=Path)
    ap.add_argument('--out', required=True, type=Path)
    ap.add_argument('--add', type=int, default=3)
    ap.add_argument('--where', choices=('end', 'interleave'), default='end')
    args = ap.parse_args()
    print(grow(args.model, args.out, args.add, args.where))


if __name__ == '__main__':
    main()
