"""LoRA fine-tuning of a LLaVA-NeXT, Qwen2-VL / Qwen2.5-VL or Idefics3 base on the same
Set-of-Marks grounding turns as Spatial-LLaVA (the recipe on a newer base).

Each training sequence is exactly what the resolver scores: the frame prefix and query from
``ChatResolver`` (the family's processor and chat template), then the target mark's answer
tokens and the end-of-turn token, with the loss on those answer tokens only. The model's own
forward computes positions (M-RoPE included), so training and scoring agree. The vision tower
and projector stay frozen; LoRA goes on the language model's attention and MLP projections.
The merged result is written in the base's layout, so ``Resolver.from_pretrained`` loads it
unchanged.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from pathlib import Path

import torch

from spatial_llava_ros.errors import InputError

LORA_TARGETS = (r'.*(language_model|text_model)\..*\.'
                r'(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)')


def sequence(resolver, image, mark_ids: list[int], query: str, target: int) -> dict:
    """Model inputs and labels (answer tokens only) for one grounding turn."""
    text = resolver.chat.frame_text(list(mark_ids)) + resolver.chat.query_text(query)
    ids, mm = resolver.frame_inputs(image, text)
    answer = resolver.answer_ids(target)
    input_ids = torch.tensor([ids + answer], device=resolver.device)
    labels = torch.full_like(input_ids, -100)
    labels[0, len(ids):] = input_ids[0, len(ids):]
    if 'mm_token_type_ids' in mm:  # answer tokens are text (type 0)
        pad = torch.zeros(1, len(answer), dtype=mm['mm_token_type_ids'].dtype,
                          device=resolver.device)
        mm['mm_token_type_ids'] = torch.cat([mm['mm_token_type_ids'], pad], dim=1)
    return {'input_ids': input_ids, 'attention_mask': torch.ones_like(input_ids),
            'labels': labels, **mm}


def train_family(cfg, base: Path, template, progress: bool = True):
    """Run ``cfg`` (lm: lora) on a non-LLaVA-1.5 base; returns the trainer's TrainResult."""
    from peft import LoraConfig, get_peft_model

    from spatial_llava_ros.model.loading import load_model
    from spatial_llava_ros.model.resolver import Resolver
    from spatial_llava_ros.training.config import parse_seeds
    from spatial_llava_ros.training.synthetic import marked_scene, settings_from_data
    from spatial_llava_ros.training.trainer import TrainResult

    if cfg.lm != 'lora':
        raise InputError(f'lm: {cfg.lm!r}; a {base.name} base of a newer family is fine-tuned '
                         'with LoRA only (lm: lora)')
    if cfg.vision != 'frozen' or cfg.dense_weight or cfg.reading_weight or cfg.vision_only:
        raise InputError('a newer-family base trains LoRA on the language model only: set '
                         'vision: frozen and no dense_weight / reading_weight / vision_only')
    t0 = time.time()
    out = Path(cfg.output_dir)
    loaded = load_model(base, device=cfg.device, dtype='float32')
    resolver = Resolver(loaded, template, frame_cache_size=0)
    model = loaded.model
    for p in model.parameters():
        p.requires_grad_(False)
    lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=LORA_TARGETS, bias='none')
    model = get_peft_model(model, lora)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    stop = cfg.stop_at or cfg.steps
    seeds = parse_seeds(cfg.data.train_seeds)[: max(1, stop * cfg.batch_size)]
    settings = settings_from_data(cfg.data)
    frames = [f for f in (marked_scene(s, settings, max_expressions=cfg.data.max_expressions)
                          for s in seeds) if f.queries]
    if not frames:
        raise InputError(f'no grounding queries in train_seeds {cfg.data.train_seeds}')
    rng = random.Random(cfg.seed)
    history = []
    model.train()
    for step in range(stop):
        lr = cfg.lr * min(1.0, (step + 1) / max(1, cfg.warmup_steps))
        for group in opt.param_groups:
            group['lr'] = lr
        opt.zero_grad()
        losses = []
        for _ in range(cfg.batch_size):
            f = frames[rng.randrange(len(frames))]
            query, target, _rel = f.queries[rng.randrange(len(f.queries))]
            loss = model(**sequence(resolver, f.image, f.mark_ids, query, target)).loss
            (loss / cfg.batch_size).backward()
            losses.append(loss.item())
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        history.append({'step': step + 1, 'loss': sum(losses) / len(losses), 'lr': lr})
        if progress:
            print(f'step {step + 1}/{stop} loss {history[-1]["loss"]:.4f}', flush=True)
    final = out / 'final'
    export_family(model.merge_and_unload(), base, final)
    settings.save(final)
    (final / 'train_summary.json').write_text(
        json.dumps({'family': loaded.family, 'base': str(base), 'steps': stop,
                    'history': history}, indent=2) + '\n', encoding='utf-8')
    return TrainResult(final, stop, time.time() - t0, history)


def export_family(model, base: Path, final: Path) -> Path:
    """Merged weights + config from ``model``; processor, tokenizer and chat template files
    copied from the base (Qwen2-VL's processor cannot save itself without torchvision)."""
    final.mkdir(parents=True, exist_ok=True)
    skip = {'config.json', 'generation_config.json', 'model.safetensors.index.json'}
    for f in base.iterdir():
        if f.is_file() and f.suffix != '.safetensors' and f.name not in skip:
            shutil.copy2(f, final / f.name)
    model.eval()
    model.save_pretrained(final)
    return final
