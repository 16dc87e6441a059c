"""The LLaVA-1.5 fine-tuning recipe with transformers, sized from a CPU toy to a GPU run.

Vision tower frozen (or trained, for a model from scratch), projector trained, language
model fully or with LoRA (peft); bf16 on CUDA, float32 on CPU; optional gradient
checkpointing; checkpoints that resume exactly (weights, optimiser, schedule, step); loss on
answer tokens only; the final checkpoint is a plain LLaVA directory (LoRA merged, or adapter
+ base path) that ``model.load_model`` / ``Resolver`` load unchanged.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch

from spatial_llava_ros.errors import InputError
from spatial_llava_ros.model.prompt import PromptTemplate
from spatial_llava_ros.training.config import TrainConfig, parse_seeds
from spatial_llava_ros.training.packing import (
    Example,
    Packer,
    Segment,
    answer_loss,
    conversation_example,
    grounding_example,
)
from spatial_llava_ros.training.synthetic import (
    MarkedScene,
    marked_scene,
    settings_from_data,
    training_frame,
)

STATE_FILE = 'trainer_state.pt'


@dataclass
class TrainResult:
    final_dir: Path
    steps: int
    wall_s: float
    history: list[dict] = field(default_factory=list)


def vocabulary_texts(template: PromptTemplate) -> list[str]:
    """Text the from-scratch tokenizer must cover: prompt, templates, scene words."""
    from spatial_llava_ros.scene import catalog
    from spatial_llava_ros.scene.expressions import ORDINALS, PHRASES
    from spatial_llava_ros.training.conversations import load_templates

    texts = [template.all_text()]
    conv = load_templates()
    for value in conv.values():
        if isinstance(value, str):
            texts.append(value)
        elif isinstance(value, list):
            texts += [str(v) for v in value]
        elif isinstance(value, dict):
            texts += [str(v) for v in value.values()]
    texts.append(' '.join(c.replace('_', ' ') for c in catalog.CATEGORIES))
    texts.append(' '.join(c.replace('_', ' ') + 's' for c in catalog.CATEGORIES))
    texts.append(' '.join(catalog.COLORS))
    texts.append(' '.join(ORDINALS) + ' ' + ' '.join(PHRASES.values()))
    texts.append('leftmost rightmost nearest farthest largest smallest between and from the')
    return texts


def build_base(cfg: TrainConfig, out: Path, template: PromptTemplate) -> Path:
    """The starting checkpoint: ``model.base_path``, or a fresh tiny one (from scratch)."""
    if cfg.model.base_path:
        base = Path(cfg.model.base_path).expanduser()
        if not base.is_dir():
            raise InputError(f'model.base_path {base} is not a directory')
        return base
    from spatial_llava_ros.model.tiny import make_tiny_model

    base = out / 'base'
    if not (base / 'config.json').is_file():
        m = cfg.model
        make_tiny_model(base, seed=m.seed, image_size=m.image_size, patch_size=m.patch_size,
                        vision_hidden=m.vision_hidden, vision_layers=m.vision_layers,
                        text_hidden=m.text_hidden, text_layers=m.text_layers, heads=m.heads,
                        vision_feature_layer=m.vision_feature_layer,
                        prompt_texts=vocabulary_texts(template))
    return base


def _trainable(model, cfg: TrainConfig):
    """Freeze/unfreeze per the recipe; wrap the LM with LoRA when asked. Returns the model
    to train (maybe a PeftModel) and the underlying LlavaForConditionalGeneration."""
    llava = model
    for p in llava.parameters():
        p.requires_grad_(False)
    if cfg.lm == 'lora':
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                          target_modules=r'.*language_model.*\.(q_proj|k_proj|v_proj|o_proj|'
                                         r'gate_proj|up_proj|down_proj)', bias='none')
        model = get_peft_model(llava, lora)
    elif cfg.lm == 'full':
        for p in llava.model.language_model.parameters():
            p.requires_grad_(True)
        for p in llava.lm_head.parameters():
            p.requires_grad_(True)
    for p in llava.model.multi_modal_projector.parameters():
        p.requires_grad_(True)
    if cfg.vision == 'train':
        for p in llava.model.vision_tower.parameters():
            p.requires_grad_(True)
    return model, llava


def _lr_lambda(cfg: TrainConfig):
    def fn(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        span = max(1, cfg.steps - cfg.warmup_steps)
        t = min(1.0, (step - cfg.warmup_steps) / span)
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))
    return fn


def reading_targets(anchors: dict[int, tuple[int, int]], shape: tuple[int, int],
                    image_size: int, patch_size: int, tokenizer) -> list[tuple[int, int]]:
    """(image token index, first-digit token) of every drawn number.

    Follows the resolver's preprocessing: pad to a centred square, resize to ``image_size``;
    image tokens are the patches in row-major order (CLS dropped).
    """
    h, w = shape
    side = max(h, w)
    top, left = (side - h) // 2, (side - w) // 2
    grid = image_size // patch_size
    cell = side / grid
    out = []
    for mark, (u, v) in anchors.items():
        row = min(grid - 1, int((v + top) / cell))
        col = min(grid - 1, int((u + left) / cell))
        out.append((row * grid + col, int(tokenizer.convert_tokens_to_ids(str(mark)[0]))))
    return out


class FramePool:
    """Prepared training frames; samples a batch of Examples deterministically per step."""

    def __init__(self, frames: list[MarkedScene], conversations: list[Example],
                 template: PromptTemplate, queries_per_frame: int,
                 reading: dict[int, list[tuple[int, int]]] | None = None,
                 free_per_frame: int = 0, vsr_frames: int = 0, vsr_per_frame: int = 6) -> None:
        self.frames = [f for f in frames if f.queries]
        self.conversations = conversations
        self.template = template
        self.qpf = queries_per_frame
        self.reading = reading or {}
        self.free_per_frame = free_per_frame
        self.vsr_frames = vsr_frames
        self.vsr_per_frame = vsr_per_frame
        self.vsr_pool = [k for k, f in enumerate(self.frames) if f.vsr]
        if not self.frames and not self.conversations:
            raise InputError('no training frames with a matched query')

    def __len__(self) -> int:
        return len(self.frames) + len(self.conversations)

    def batch(self, step: int, size: int, seed: int) -> list[Example]:
        rng = random.Random(seed * 1_000_003 + step)
        out: list[Example] = []
        for _ in range(size):
            k = rng.randrange(len(self))
            if k >= len(self.frames):
                out.append(self.conversations[k - len(self.frames)])
                continue
            f = self.frames[k]
            qs = f.queries if len(f.queries) <= self.qpf else rng.sample(f.queries, self.qpf)
            qs = [(t, m) for t, m, _ in qs]
            if self.free_per_frame:
                free = f.free if len(f.free) <= self.free_per_frame else rng.sample(
                    f.free, self.free_per_frame)
                ex = multitask_example(f.image, f.mark_ids, qs, free, self.template)
            else:
                ex = grounding_example(f.image, f.mark_ids, qs, self.template)
            ex.pixel_values = getattr(f, 'pixels', None)
            ex.reading = self.reading.get(k, [])
            if f.dense is not None:
                ex.dense = torch.from_numpy(f.dense.marked)
            out.append(ex)
        for _ in range(self.vsr_frames if self.vsr_pool else 0):
            f = self.frames[rng.choice(self.vsr_pool)]
            caps = f.vsr if len(f.vsr) <= self.vsr_per_frame else rng.sample(
                f.vsr, self.vsr_per_frame)
            ex = vsr_example(f.rgb, caps, self.template)
            ex.pixel_values = getattr(f, 'plain_pixels', None)
            if f.dense is not None:
                ex.dense = torch.from_numpy(f.dense.plain)
            out.append(ex)
        return out

    def vision_batch(self, step: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(pixels, dense targets) for vision-only pretraining; half the frames unmarked
        when unmarked pixels are there (the VSR frames carry no numbers)."""
        rng = random.Random(seed * 1_000_003 + step)
        pix, tgt = [], []
        for _ in range(size):
            f = self.frames[rng.randrange(len(self.frames))]
            plain = getattr(f, 'plain_pixels', None)
            if plain is not None and rng.random() < 0.5:
                pix.append(plain)
                tgt.append(torch.from_numpy(f.dense.plain))
            else:
                pix.append(f.pixels)
                tgt.append(torch.from_numpy(f.dense.marked))
        return torch.stack(pix).float(), torch.stack(tgt)


def _shared_head(template: PromptTemplate) -> str:
    """The text every prompt starts with (system, USER:, <image>): one prefix per image."""
    head = template.question_text('\x00').split('\x00')[0]
    if '<image>' not in head:
        raise InputError('prompt question must have <image> before {question} for '
                         'multi-task packing')
    return head


def multitask_example(image: np.ndarray, mark_ids: list[int], queries: list[tuple[str, int]],
                      free: list[tuple[str, str]], template: PromptTemplate) -> Example:
    """One image prefix; branches for grounding queries (scored as the resolver scores
    them: frame text + query + mark) and free-form turns (the free-answer prompt)."""
    head = _shared_head(template)
    frame = template.frame_text(sorted(mark_ids))
    if not frame.startswith(head):
        raise InputError('frame_prefix and question must share their start for multi-task '
                         'packing')
    branches = [[Segment(frame[len(head):] + template.query_text(q)),
                 Segment(template.answer_text(m), target=True, eos=template.score_eos)]
                for q, m in queries]
    branches += [[Segment(template.question_text(q)[len(head):]),
                  Segment(' ' + a.strip(), target=True, eos=True)] for q, a in free]
    return Example(image, head, branches)


def vsr_example(rgb: np.ndarray, captions: list[tuple[str, bool]],
                template: PromptTemplate) -> Example:
    """Unmarked frame, true/false captions in the wording ``eval vsr`` asks."""
    from spatial_llava_ros.evaluation.vsr import QUESTION

    head = _shared_head(template)
    branches = [[Segment(template.question_text(QUESTION.format(caption=c))[len(head):]),
                 Segment(' yes' if label else ' no', target=True, eos=True)]
                for c, label in captions]
    return Example(rgb, head, branches)


def _prepare_one(seed: int, settings, max_expressions: int, grid: int, dense: bool,
                 free: bool) -> MarkedScene:
    if not dense and not free:
        return marked_scene(seed, settings, max_expressions=max_expressions)
    return training_frame(seed, settings, max_expressions, grid, dense, free)


def prepare_frames(seeds: list[int], cfg: TrainConfig, cache: Path | None,
                   desc: str, progress: bool, grid: int = 0) -> list[MarkedScene]:
    """Marked frames for ``seeds`` (cached to ``cache`` as a torch file)."""
    if cache is not None and cache.is_file():
        blob = torch.load(cache, weights_only=False)
        if blob.get('seeds') == seeds and blob.get('settings') == _cache_key(cfg, grid):
            return blob['frames']
    settings = settings_from_data(cfg.data)
    job = partial(_prepare_one, settings=settings, max_expressions=cfg.data.max_expressions,
                  grid=grid, dense=cfg.dense_weight > 0,
                  free=bool(cfg.data.free_per_frame or cfg.data.vsr_frames))
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(seeds), desc=f'prepare {desc}', unit='scene')
    frames = []
    if cfg.data.workers > 1:
        import multiprocessing as mp

        with mp.get_context('fork').Pool(cfg.data.workers) as pool:
            for f in pool.imap(job, seeds, chunksize=8):
                frames.append(f)
                if bar is not None:
                    bar.update(1)
    else:
        for s in seeds:
            frames.append(job(s))
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        torch.save({'seeds': seeds, 'settings': _cache_key(cfg, grid), 'frames': frames}, cache)
    return frames


def _cache_key(cfg: TrainConfig, grid: int) -> str:
    """What the prepared frames depend on (a stale cache is rebuilt, never reused)."""
    extras = (cfg.dense_weight > 0, bool(cfg.data.free_per_frame or cfg.data.vsr_frames))
    if extras == (False, False):
        return repr(settings_from_data(cfg.data))
    return f'{settings_from_data(cfg.data)!r} grid={grid} dense,free={extras}'


def load_json_examples(cfg: TrainConfig, template: PromptTemplate) -> list[Example]:
    """Examples from a converted LLaVA conversations JSON (``spatial-llava convert``)."""
    from PIL import Image

    path = Path(cfg.data.json_path)
    if not path.is_file():
        raise InputError(f'data.json_path {path} does not exist')
    records = json.loads(path.read_text(encoding='utf-8'))
    image_dir = Path(cfg.data.image_dir) if cfg.data.image_dir else path.parent
    out = []
    for rec in records:
        img_path = image_dir / rec['image']
        if not img_path.is_file():
            raise InputError(f'record {rec.get("id")}: image {img_path} not found')
        image = np.asarray(Image.open(img_path).convert('RGB'))
        out.append(conversation_example(image, rec['conversations'], template,
                                        meta={'id': rec.get('id')}))
    return out


def _checkpoints(out: Path) -> list[Path]:
    found = [p for p in out.glob('checkpoint-*') if (p / STATE_FILE).is_file()]
    return sorted(found, key=lambda p: int(p.name.split('-')[1]))


def evaluate_frames(llava, packer: Packer, frames: list[MarkedScene], template: PromptTemplate,
                    dtype: torch.dtype, device: torch.device, batch_size: int = 8,
                    dense_heads=None) -> dict:
    """Validation loss and teacher-forced exact-answer accuracy over every query (and,
    with ``dense_heads``, the per-patch heads' accuracies: ``val_dense_mark_on_marks`` is
    how often the number drawn at a patch is read right)."""
    llava.eval()
    loss_sum, n_targets, hits = 0.0, 0, []
    dense_sums: dict[str, list[float]] = {}
    with torch.no_grad():
        exs = [grounding_example(f.image, f.mark_ids, [(t, m) for t, m, _ in f.queries],
                                 template) for f in frames if f.queries]
        for f, ex in zip([f for f in frames if f.queries], exs):
            ex.pixel_values = getattr(f, 'pixels', None)
            if dense_heads is not None and f.dense is not None:
                ex.dense = torch.from_numpy(f.dense.marked)
        for i in range(0, len(exs), batch_size):
            b = _to(packer.collate(exs[i:i + batch_size], dtype), device)
            stats: dict = {}
            _, per = answer_loss(llava, b, dense_heads=dense_heads, dense_weight=1.0,
                                 stats=stats)
            loss_sum += stats.pop('answer_loss') * len(b.targets)
            for k, v in stats.items():
                dense_sums.setdefault(k, []).append(v)
            n_targets += len(b.targets)
            hits.append(per)
    llava.train()
    per = torch.cat(hits) if hits else torch.zeros(0)
    return {'val_answer_acc': float(per.mean()) if per.numel() else float('nan'),
            'val_answers': int(per.numel()), 'val_loss': loss_sum / max(1, n_targets),
            **{f'val_{k}': round(float(np.mean(v)), 4) for k, v in dense_sums.items()}}


def _to(batch, device):
    for name in ('input_ids', 'position_ids', 'attention_mask', 'pixel_values', 'pred_pos',
                 'targets', 'answer_of'):
        setattr(batch, name, getattr(batch, name).to(device))
    return batch


def train(cfg: TrainConfig, progress: bool = True) -> TrainResult:
    """Run (or resume) a training run; returns where the loadable checkpoint went."""
    from spatial_llava_ros.model.families import checkpoint_family
    from spatial_llava_ros.model.loading import load_model

    t_start = time.time()
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / 'train_config.json').write_text(json.dumps(cfg.to_dict(), indent=2) + '\n',
                                           encoding='utf-8')
    template = PromptTemplate.load()
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)

    base = build_base(cfg, out, template)
    if checkpoint_family(base) != 'llava':  # a newer family: LoRA on the same SoM turns
        from spatial_llava_ros.training.family_trainer import train_family

        return train_family(cfg, base, template, progress)
    loaded = load_model(base, device=cfg.device, dtype='float32')
    device = loaded.device
    compute_dtype = torch.float32
    if device.type == 'cuda' and cfg.dtype in ('auto', 'bf16', 'bfloat16'):
        compute_dtype = torch.bfloat16
    model, llava = _trainable(loaded.model, cfg)
    if cfg.vision_only:  # the language model waits for stage 2
        for p in llava.model.language_model.parameters():
            p.requires_grad_(False)
        for p in llava.lm_head.parameters():
            p.requires_grad_(False)
    if cfg.gradient_checkpointing:
        llava.gradient_checkpointing_enable(gradient_checkpointing_kwargs={'use_reentrant': False})
        if cfg.vision == 'frozen':
            llava.enable_input_require_grads()
    llava.train()
    packer = Packer(loaded.tokenizer, loaded.image_token_id, llava.config.image_seq_length,
                    loaded.processor.image_processor)

    # ---- data
    conversations: list[Example] = []
    frames: list[MarkedScene] = []
    vcfg = llava.config.vision_config
    grid = vcfg.image_size // vcfg.patch_size
    if cfg.data.source == 'json':
        conversations = load_json_examples(cfg, template)
    else:
        cache = Path(cfg.data.workers_cache) if cfg.data.workers_cache else out / 'frames.pt'
        frames = prepare_frames(parse_seeds(cfg.data.train_seeds), cfg, cache, 'train', progress,
                                grid)
    val_frames = []
    if cfg.data.val_seeds:
        val_frames = prepare_frames(parse_seeds(cfg.data.val_seeds), cfg, out / 'val_frames.pt',
                                    'val', progress, grid)
    for f in frames + val_frames:  # one preprocessing per frame, reused every epoch
        f.pixels = packer.pixels(Example(f.image, '')).to(torch.float16)
        if f.rgb is not None and cfg.data.vsr_frames:
            f.plain_pixels = packer.pixels(Example(f.rgb, '')).to(torch.float16)
    dense_heads = None
    if cfg.dense_weight > 0:
        from spatial_llava_ros.training.dense import DenseHeads

        dense_heads = DenseHeads(llava.config.text_config.hidden_size).to(device)
        if cfg.dense_heads_from:
            src = Path(cfg.dense_heads_from)
            if not src.is_file():
                raise InputError(f'dense_heads_from {src} does not exist')
            dense_heads.load_state_dict(torch.load(src, map_location=device))
    reading = {}
    if cfg.reading_weight > 0:
        img, patch = llava.config.vision_config.image_size, llava.config.vision_config.patch_size
        kept = [f for f in frames if f.queries]
        for k, f in enumerate(kept):
            if not getattr(f, 'anchors', None):
                raise InputError(f'reading_weight > 0 but frame {f.seed} has no mark anchors '
                                 '(stale frames cache: delete it)')
            reading[k] = reading_targets(f.anchors, f.image.shape[:2], img, patch,
                                         loaded.tokenizer)
    pool = FramePool(frames, conversations, template, cfg.data.queries_per_frame, reading,
                     cfg.data.free_per_frame, cfg.data.vsr_frames, cfg.data.vsr_per_frame)
    unk = loaded.tokenizer.unk_token_id
    unk_queries = sum(unk in packer.encode(t) for f in frames for t, _, _ in f.queries)

    # ---- optimisation
    params = [p for p in model.parameters() if p.requires_grad]
    if dense_heads is not None:
        params += list(dense_heads.parameters())
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    opt = torch.optim.AdamW([{'params': decay, 'weight_decay': cfg.weight_decay},
                             {'params': no_decay, 'weight_decay': 0.0}], lr=cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg))
    step, history, prior_wall = 0, [], 0.0
    ckpts = _checkpoints(out) if cfg.resume else []
    if ckpts:
        state = torch.load(ckpts[-1] / STATE_FILE, weights_only=False, map_location=device)
        model.load_state_dict(state['model'])
        if dense_heads is not None and 'dense_heads' in state:
            dense_heads.load_state_dict(state['dense_heads'])
        opt.load_state_dict(state['optimizer'])
        sched.load_state_dict(state['scheduler'])
        step, history, prior_wall = state['step'], state['history'], state.get('wall_s', 0.0)
    meta = {'trainable_params': sum(p.numel() for p in params),
            'total_params': sum(p.numel() for p in llava.parameters()),
            'train_frames': len(pool.frames), 'conversations': len(conversations),
            'train_queries': sum(len(f.queries) for f in pool.frames),
            'unk_queries': unk_queries, 'resumed_from_step': step}
    (out / 'train_meta.json').write_text(json.dumps(meta, indent=2) + '\n', encoding='utf-8')

    log = (out / 'train_log.jsonl').open('a', encoding='utf-8')
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=min(cfg.steps, cfg.stop_at or cfg.steps), initial=step, desc='train',
                   unit='step')
    run_start = time.time()
    window: list[float] = []
    dense_window: dict[str, list[float]] = {}
    last_step = min(cfg.steps, cfg.stop_at or cfg.steps)
    while step < last_step:
        opt.zero_grad(set_to_none=True)
        loss_sum = 0.0
        for micro in range(cfg.grad_accum):
            if cfg.vision_only:
                from spatial_llava_ros.training.dense import image_features

                pix, tgt = pool.vision_batch(step * cfg.grad_accum + micro, cfg.batch_size,
                                             cfg.seed)
                loss, acc = dense_heads.loss(image_features(llava, pix.to(device)),
                                             tgt.to(device))
                for k, v in acc.items():
                    dense_window.setdefault(f'dense_{k}', []).append(v)
                (loss / cfg.grad_accum).backward()
                loss_sum += float(loss.detach()) / cfg.grad_accum
                continue
            batch = _to(packer.collate(pool.batch(step * cfg.grad_accum + micro, cfg.batch_size,
                                                  cfg.seed), compute_dtype), device)
            stats: dict = {}
            with torch.autocast(device.type, dtype=compute_dtype,
                                enabled=compute_dtype != torch.float32):
                loss, _ = answer_loss(llava, batch, cfg.reading_weight, dense_heads,
                                      cfg.dense_weight, stats)
            stats.pop('answer_loss', None)
            for k, v in stats.items():
                dense_window.setdefault(k, []).append(v)
            (loss / cfg.grad_accum).backward()
            loss_sum += float(loss.detach()) / cfg.grad_accum
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        sched.step()
        step += 1
        window.append(loss_sum)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f'{loss_sum:.3f}', lr=f'{sched.get_last_lr()[0]:.2e}')
        entry = None
        if step % cfg.log_every == 0 or step == 1 or step == last_step:
            entry = {'step': step, 'loss': float(np.mean(window)), 'lr': sched.get_last_lr()[0],
                     'wall_s': round(prior_wall + time.time() - run_start, 1),
                     **{k: round(float(np.mean(v)), 4) for k, v in dense_window.items()}}
            window, dense_window = [], {}
        if val_frames and (step % cfg.eval_every == 0 or step == last_step):
            entry = entry or {'step': step, 'wall_s': round(prior_wall + time.time() - run_start,
                                                            1)}
            if cfg.vision_only:
                from spatial_llava_ros.training.dense import evaluate_dense

                entry.update(evaluate_dense(llava, dense_heads, val_frames))
            else:
                entry.update(evaluate_frames(llava, packer, val_frames, template,
                                             compute_dtype, device, dense_heads=dense_heads))
        if entry is not None:
            history.append(entry)
            log.write(json.dumps(entry) + '\n')
            log.flush()
        if step % cfg.save_every == 0 or step == last_step:
            _save_state(out, step, model, opt, sched, history,
                        prior_wall + time.time() - run_start, cfg.keep_checkpoints, dense_heads)
    if bar is not None:
        bar.close()
    log.close()
    wall = prior_wall + time.time() - run_start
    final = export(model, loaded, out / 'final', cfg, base)
    if dense_heads is not None:  # for a next stage; not part of the checkpoint
        torch.save(dense_heads.state_dict(), out / 'dense_heads.pt')
    settings_from_data(cfg.data).save(final)
    summary = {'steps': step, 'wall_s': round(wall, 1), 'total_s': round(time.time() - t_start, 1),
               'last': history[-1] if history else None, **meta}
    (final / 'train_summary.json').write_text(json.dumps(summary, indent=2) + '\n',
                                              encoding='utf-8')
    return TrainResult(final, step, wall, history)


def _save_state(out: Path, step: int, model, opt, sched, history, wall: float, keep: int,
                dense_heads=None):
    ck = out / f'checkpoint-{step}'
    ck.mkdir(parents=True, exist_ok=True)
    tmp = ck / (STATE_FILE + '.tmp')
    state = {'step': step, 'model': model.state_dict(), 'optimizer': opt.state_dict(),
             'scheduler': sched.state_dict(), 'history': history, 'wall_s': wall}
    if dense_heads is not None:  # trainer-only heads: resumed, never exported
        state['dense_heads'] = dense_heads.state_dict()
    torch.save(state, tmp)
    tmp.replace(ck / STATE_FILE)  # atomic: a killed run never leaves a half checkpoint
    for old in _checkpoints(out)[:-max(1, keep)]:
        shutil.rmtree(old, ignore_errors=True)


def export(model, loaded, final: Path, cfg: TrainConfig, base: Path) -> Path:
    """Write the checkpoint the resolver loads: merged weights, or adapter + base path."""
    final.mkdir(parents=True, exist_ok=True)
    if cfg.lm == 'lora' and not cfg.merge_lora:
        model.peft_config['default'].base_model_name_or_path = str(base.resolve())
        model.save_pretrained(final)
        loaded.processor.save_pretrained(final)
        return final
    llava = model.merge_and_unload() if cfg.lm == 'lora' else model
    llava.eval()
    llava.save_pretrained(final, safe_serialization=True)
    loaded.processor.save_pretrained(final)
    from spatial_llava_ros.model.chat_template import ensure_chat_template

    ensure_chat_template(final)  # so transformers serve / vLLM serve it as it is
    return final
