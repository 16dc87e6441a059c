"""SPR step 5: DPO on the preference pairs with trl's DPOTrainer, LoRA on the language model.

trl 1.16 trains vision-language models: the processing class is the LlavaProcessor, the
dataset has ``images``, ``prompt``, ``chosen`` and ``rejected``, and its vision collator
tokenizes and preprocesses images on the fly. With a PEFT model trl passes no separate
reference model: the reference log-probs come from the same network with the adapter
disabled, i.e. the checkpoint SPR started from. Two things are adapted to this package:
the prompt is the resolver's own free-form template (config/prompt.yaml ``question``, with
BOS), and images are padded to a square first, as the resolver does, instead of the CLIP
processor's centre crop. Checkpoints go to OUT/checkpoint-N; a rerun resumes from the last.
The output directory is a PEFT adapter over the local base, which ``load_model`` /
``Resolver.from_pretrained`` load directly (``merge: true`` also writes OUT/merged).
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from spatial_llava_ros.errors import InputError, ModelLoadError
from spatial_llava_ros.spr.jsonl import read_jsonl

log = logging.getLogger(__name__)
SETTINGS_FILE = 'som_settings.json'


def load_pairs(work_dir: str | Path, pairs_file: str | Path | None = None) -> list[dict]:
    work = Path(work_dir)
    path = Path(pairs_file) if pairs_file else work / 'pairs.jsonl'
    rows = list(read_jsonl(path))
    if not rows:
        raise InputError(f'{path} holds no preference pairs')
    for r in rows:
        img = Path(r['image'])
        if not img.is_absolute():
            img = path.parent / img
        if not img.is_file():
            raise InputError(f'pair {r.get("id")}: image {img} does not exist')
        r['image_path'] = str(img)
    return rows


class _SquareCollator:
    """trl's vision preference collator, after LLaVA-1.5's pad-to-square of every image."""

    def __init__(self, processor, max_length=None) -> None:
        from trl.trainer.dpo_trainer import DataCollatorForVisionPreference

        from spatial_llava_ros.model.image import pad_to_square

        self._inner = DataCollatorForVisionPreference(processor, max_length=max_length)
        mean = getattr(processor.image_processor, 'image_mean', None) or (0.5, 0.5, 0.5)
        self._fill = tuple(int(round(255 * m)) for m in mean)
        self._pad = pad_to_square

    def __call__(self, examples):
        import numpy as np
        from PIL import Image

        for ex in examples:
            ex['images'] = [Image.fromarray(self._pad(np.asarray(im.convert('RGB')), self._fill))
                            for im in ex['images']]
        return self._inner(examples)


def _as_list(value, kind):
    if value is None:
        return None
    return [kind(v) for v in value] if isinstance(value, (list, tuple)) else [kind(value)]


def last_checkpoint(out_dir: Path) -> Path | None:
    ckpts = [p for p in out_dir.glob('checkpoint-*') if p.name.split('-')[-1].isdigit()]
    return max(ckpts, key=lambda p: int(p.name.split('-')[-1])) if ckpts else None


def train_dpo(model_dir: str | Path, work_dir: str | Path, out_dir: str | Path, cfg: dict,
              device: str | None = None, dtype: str | None = None, resume: bool = True,
              pairs_file: str | Path | None = None, progress: bool = True) -> dict:
    """Train a LoRA adapter with DPO on ``work_dir/pairs.jsonl``; returns the train metrics."""
    from datasets import Dataset, Image, Sequence
    from peft import LoraConfig

    try:
        from trl import DPOConfig, DPOTrainer
        from trl.trainer.dpo_trainer import DataCollatorForVisionPreference  # noqa: F401
    except ImportError as exc:
        raise ModelLoadError(f'spr train needs trl with vision DPO (tested: trl 1.16): {exc}'
                             ) from exc

    from spatial_llava_ros.model.loading import load_model
    from spatial_llava_ros.model.prompt import PromptTemplate

    rows = load_pairs(work_dir, pairs_file)
    loaded = load_model(Path(model_dir).resolve(), device=device, dtype=dtype)
    if loaded.adapter is not None and not cfg['merge']:
        raise ModelLoadError(
            f'{model_dir} is an adapter (merged on load); an SPR adapter on top of it has no '
            'base on disk: set merge: true in spr_train.yaml (writes OUT/merged)')
    template = PromptTemplate.load()
    bos = loaded.tokenizer.bos_token or ''
    data = Dataset.from_dict({
        'images': [[r['image_path']] for r in rows],
        'prompt': [bos + template.question_text(r['question']) for r in rows],
        'chosen': [' ' + r['chosen'].strip() for r in rows],
        'rejected': [' ' + r['rejected'].strip() for r in rows],
    }).cast_column('images', Sequence(Image()))

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    on_cuda = loaded.device.type == 'cuda'
    import torch

    args = DPOConfig(
        output_dir=str(out), beta=float(cfg['beta']), loss_type=_as_list(cfg['loss_type'], str),
        loss_weights=_as_list(cfg['loss_weights'], float),
        learning_rate=float(cfg['learning_rate']), max_steps=int(cfg['max_steps'] or -1),
        num_train_epochs=float(cfg['num_train_epochs']),
        per_device_train_batch_size=int(cfg['per_device_train_batch_size']),
        gradient_accumulation_steps=int(cfg['gradient_accumulation_steps']),
        warmup_steps=int(cfg['warmup_steps']), weight_decay=float(cfg['weight_decay']),
        lr_scheduler_type=str(cfg['lr_scheduler_type']), logging_steps=int(cfg['logging_steps']),
        save_steps=int(cfg['save_steps']), save_total_limit=cfg['save_total_limit'],
        seed=int(cfg['seed']), max_length=cfg['max_length'], report_to=[],
        use_cpu=not on_cuda, bf16=on_cuda and loaded.dtype == torch.bfloat16,
        fp16=on_cuda and loaded.dtype == torch.float16, gradient_checkpointing=False,
        remove_unused_columns=False, disable_tqdm=not progress, dataloader_num_workers=0,
    )
    lora = LoraConfig(r=int(cfg['lora']['r']), lora_alpha=int(cfg['lora']['alpha']),
                      lora_dropout=float(cfg['lora']['dropout']),
                      target_modules=str(cfg['lora']['target_modules']), task_type='CAUSAL_LM')
    model = loaded.model.train()
    trainer = DPOTrainer(model=model, args=args, train_dataset=data,
                         processing_class=loaded.processor, peft_config=lora,
                         data_collator=_SquareCollator(loaded.processor, cfg['max_length']))
    ckpt = last_checkpoint(out) if resume else None
    if ckpt is not None:
        log.info('resuming DPO from %s', ckpt)
    result = trainer.train(resume_from_checkpoint=str(ckpt) if ckpt else None)
    trainer.save_model(str(out))
    _fix_adapter_base(out, loaded.path)
    settings = Path(model_dir) / SETTINGS_FILE
    if settings.is_file():
        shutil.copy(settings, out / SETTINGS_FILE)
    metrics = {'train_loss': float(result.training_loss), 'global_step': int(result.global_step),
               'pairs': len(rows), 'resumed_from': str(ckpt) if ckpt else None,
               'base_model': str(loaded.path), 'log': trainer.state.log_history}
    if cfg['merge']:
        merged_dir = out / 'merged'
        merged = trainer.model.merge_and_unload()
        merged.save_pretrained(merged_dir)
        loaded.processor.save_pretrained(merged_dir)
        if settings.is_file():
            shutil.copy(settings, merged_dir / SETTINGS_FILE)
        metrics['merged'] = str(merged_dir)
        if loaded.adapter is not None:  # the adapter's base would be the un-merged one
            (out / 'adapter_config.json').rename(out / 'adapter_config.json.unmerged-base')
    (out / 'spr_train.json').write_text(json.dumps(metrics, indent=2) + '\n', encoding='utf-8')
    return metrics


def _fix_adapter_base(out: Path, base: Path) -> None:
    """Point the adapter at its local base by absolute path (no hub names)."""
    cfg_file = out / 'adapter_config.json'
    if not cfg_file.is_file():
        raise ModelLoadError(f'DPO run wrote no adapter_config.json in {out}')
    data = json.loads(cfg_file.read_text(encoding='utf-8'))
    data['base_model_name_or_path'] = str(Path(base).resolve())
    cfg_file.write_text(json.dumps(data, indent=2) + '\n', encoding='utf-8')
