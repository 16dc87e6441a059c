"""GPU memory per process for fine-tuning LLaVA-1.5-7B with this trainer, from the shapes.

No GPU was available, so these figures are COMPUTED, not measured: the model is built on
the meta device from ``model.tiny.llava15_7b_config()`` (CLIP ViT-L/14-336 + Vicuna-7B) and
its parameters are counted per part; LoRA is applied with the trainer's own target modules
(peft, on the meta model) to count the adapter. Bytes follow what the trainer does:

- weights are loaded in float32 (master weights), compute runs under bf16 autocast;
- a trainable parameter costs weight 4 + gradient 4 + AdamW moments 8 = 16 bytes, a frozen
  one 4 bytes; FSDP shards all of it over the processes (plus one gathered block);
- activations with gradient checkpointing: the bf16 input of every decoder layer is kept
  (2 * hidden bytes a token a layer) plus one layer recomputed at a time, estimated as
  34 * hidden bytes a token (Korthikanti et al. 2022, without the attention-score term:
  SDPA does not materialise the scores); without checkpointing 34 * hidden per layer.

Usage: python bench/train_memory_7b.py --out bench/results/train_memory_7b.json
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

GB = 1e9


def count_parts(lora_r: int) -> dict:
    import torch
    from transformers import LlavaForConditionalGeneration

    from spatial_llava_ros.model.tiny import llava15_7b_config

    cfg = llava15_7b_config()
    with torch.device('meta'):
        model = LlavaForConditionalGeneration(cfg)
    parts = {'vision': 0, 'projector': 0, 'lm': 0}
    for name, p in model.named_parameters():
        if 'vision_tower' in name:
            parts['vision'] += p.numel()
        elif 'multi_modal_projector' in name:
            parts['projector'] += p.numel()
        else:
            parts['lm'] += p.numel()
    from peft import LoraConfig, get_peft_model

    target = (r'.*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|'
              r'down_proj)')  # the trainer's _trainable()
    peft_model = get_peft_model(model, LoraConfig(r=lora_r, lora_alpha=2 * lora_r,
                                                  target_modules=target, bias='none'))
    parts['lora'] = sum(p.numel() for n, p in peft_model.named_parameters()
                        if re.search(r'lora_[AB]', n))
    text = cfg.text_config
    return {'params': parts, 'hidden': text.hidden_size, 'layers': text.num_hidden_layers,
            'image_tokens': cfg.image_seq_length}


def estimate(shapes: dict, mode: str, world: int, strategy: str, micro_batch: int,
             seq_len: int, checkpointing: bool) -> dict:
    p = shapes['params']
    if mode == 'lora':
        trainable = p['lora'] + p['projector']
        frozen = p['vision'] + p['lm']
    else:  # full LM + projector, vision frozen (the LLaVA-1.5 recipe)
        trainable = p['lm'] + p['projector']
        frozen = p['vision']
    states = trainable * 16 + frozen * 4
    shard = world if strategy == 'fsdp' else 1
    block = 0.0
    if strategy == 'fsdp':  # one decoder block gathered in float32 (and the next prefetched)
        block = 2 * 4 * p['lm'] / shapes['layers']
    h, n_layers = shapes['hidden'], shapes['layers']
    tokens = micro_batch * seq_len
    if checkpointing:
        act = tokens * h * (2 * n_layers + 34)
    else:
        act = tokens * h * 34 * n_layers
    total = states / shard + block + act
    return {'mode': mode, 'strategy': strategy, 'processes': world,
            'micro_batch': micro_batch, 'seq_len': seq_len,
            'gradient_checkpointing': checkpointing,
            'trainable_params': trainable, 'frozen_params': frozen,
            'weights_grads_optimizer_gb': round(states / shard / GB, 1),
            'gathered_block_gb': round(block / GB, 1),
            'activations_gb': round(act / GB, 1), 'total_gb': round(total / GB, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--lora-r', type=int, default=16)
    ap.add_argument('--micro-batch', type=int, default=4, help='frames per process per step')
    ap.add_argument('--seq-len', type=int, default=1024,
                    help='packed tokens per frame (576 image tokens + text)')
    ap.add_argument('--out', default='bench/results/train_memory_7b.json')
    args = ap.parse_args()
    shapes = count_parts(args.lora_r)
    rows = []
    for mode in ('lora', 'full'):
        for strategy, world in (('one process', 1), ('ddp', 8), ('fsdp', 8), ('fsdp', 16)):
            for ckpt in (True, False):
                rows.append(estimate(shapes, mode, world, strategy, args.micro_batch,
                                     args.seq_len, ckpt))
    res = {'computed_from_shapes': True, 'measured_on_gpu': False, **shapes,
           'lora_r': args.lora_r, 'rows': rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1) + '\n', encoding='utf-8')
    p = shapes['params']
    lines = ['# LLaVA-1.5-7B fine-tuning memory per process, computed from the shapes', '',
             'NOT measured (no GPU was available). `bench/train_memory_7b.py`: parameters '
             'counted on the meta-device model; float32 master weights, bf16 autocast, AdamW.',
             '', f"Parameters: vision {p['vision'] / 1e6:.1f} M, projector "
             f"{p['projector'] / 1e6:.1f} M, LM {p['lm'] / 1e6:.1f} M, LoRA r={args.lora_r} "
             f"{p['lora'] / 1e6:.1f} M. Activations for {args.micro_batch} frames x "
             f"{args.seq_len} tokens per process.", '',
             '| LM | strategy | processes | grad. checkpointing | weights+grads+AdamW GB | '
             'gathered block GB | activations GB | total GB per GPU |',
             '|---|---|---:|---|---:|---:|---:|---:|']
    for r in rows:
        lines.append(f"| {r['mode']} | {r['strategy']} | {r['processes']} | "
                     f"{'yes' if r['gradient_checkpointing'] else 'no'} | "
                     f"{r['weights_grads_optimizer_gb']} | {r['gathered_block_gb']} | "
                     f"{r['activations_gb']} | **{r['total_gb']}** |")
    out.with_suffix('.md').write_text('\n'.join(lines) + '\n', encoding='utf-8')
    print('\n'.join(lines))
    return 0


if __name__ == '__main__':
    sys.exit(main())
