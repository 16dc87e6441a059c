"""The LLaVA-1.5 fine-tuning recipe with transformers, sized from a CPU toy to a GPU run.

Vision tower frozen (or trained, for a model from scratch), projector trained, language
model fully or with LoRA (peft); bf16 on CUDA, float32 on CPU; optional gradient
checkpointing; checkpoints that resume exactly (weights, optimiser, schedule, step); loss on
answer tokens only; the final checkpoint is a plain LLaVA directory (LoRA merged, or adapter
+ base path) that ``model.load_model`` / ``Resolver`` load unchanged. The same loop runs
as one process or as every rank of a torchrun / accelerate launch job (``distributed.py``:
DDP or FSDP; ``datasets.py``: converted data read lazily; ``checkpoints.py``).
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch

from spatial_llava_ros.errors import InputError
from spatial_llava_ros.model.prompt import PromptTemplate
from spatial_llava_ros.training import checkpoints as ckpt
from spatial_llava_ros.training import distributed as dist
from spatial_llava_ros.training.config import TrainConfig, parse_seeds
from spatial_llava_ros.training.distributed import DistEnv
from spatial_llava_ros.training.frames_cache import load_frames, save_frames
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
    keep_relations,
    marked_scene,
    settings_from_data,
    training_frame,
    weighted_queries,
)

STATE_FILE = ckpt.STATE_FILE


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


def _param_groups(module, cfg: TrainConfig) -> list[dict]:
    """AdamW groups: no weight decay on biases and norms; the vision tower at
    ``lr * vision_lr_scale`` (LambdaLR scales each group's own base rate)."""
    groups: dict[tuple[bool, bool], list] = {}
    for name, p in module.named_parameters():
        if p.requires_grad:
            groups.setdefault(('vision_tower' in name, p.ndim >= 2), []).append(p)
    out = []
    # decay first, as the checkpoints written before the vision groups expect
    for (vision, decay), ps in sorted(groups.items(), key=lambda kv: (kv[0][0], not kv[0][1])):
        scale = cfg.vision_lr_scale if vision else 1.0
        out.append({'params': ps, 'weight_decay': cfg.weight_decay if decay else 0.0,
                    'lr': cfg.lr * scale})
    return out


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
                 free_per_frame: int = 0, vsr_frames: int = 0, vsr_per_frame: int = 6,
                 renumber: float = 0.0, text_height_336: float = 40.0, pixels=None,
                 relation_weights: dict[str, float] | None = None) -> None:
        self.frames = [f for f in frames if f.queries]
        self.relation_weights = relation_weights
        # renumber: share of presentations redrawn with shuffled numbers, drawn at the
        # engine's label size; pixels: image -> pixel tensor, the resolver's preprocessing
        self.renumber, self.text_height, self.pixels = renumber, text_height_336, pixels
        if renumber and pixels is None:
            raise InputError('renumbering marks needs the image preprocessing (pixels)')
        if renumber and any(f.rgb is None or not f.anchors for f in self.frames):
            raise InputError('data.renumber_marks needs the unmarked frames: set dense_weight '
                             '> 0 or free_per_frame > 0')
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

    def _renumbered(self, f: MarkedScene, rng: random.Random):
        """(old -> new ids, image, pixels, marked dense targets) of ``f`` under shuffled
        numbers, or None when this presentation keeps the engine's numbers."""
        if not self.renumber or rng.random() >= self.renumber:
            return None
        from spatial_llava_ros.marks.placement import label_style
        from spatial_llava_ros.training.renumber import renumbered_frame, shuffled_ids

        new = shuffled_ids(f.mark_ids, rng)
        label = label_style(*f.image.shape[:2], self.text_height)
        image, dense = renumbered_frame(f.rgb, f.anchors, f.dense, new, label,
                                        getattr(f, 'leaders', None))
        return new, image, self.pixels(image), dense

    def batch(self, step: int, size: int, seed: int) -> list[Example]:
        rng = random.Random(seed * 1_000_003 + step)
        out: list[Example] = []
        for _ in range(size):
            k = rng.randrange(len(self))
            if k >= len(self.frames):
                out.append(self.conversations[k - len(self.frames)])
                continue
            f = self.frames[k]
            if len(f.queries) <= self.qpf:
                qs = f.queries
            elif self.relation_weights:
                qs = weighted_queries(f.queries, self.qpf, self.relation_weights, rng)
            else:
                qs = rng.sample(f.queries, self.qpf)
            qs = [(t, m) for t, m, _ in qs]
            re = self._renumbered(f, rng)
            if re is not None:  # free-form turns name marks in prose: not renamed, left out
                new, image, pixels, dense = re
                ex = grounding_example(image, f.mark_ids, [(t, new[m]) for t, m in qs],
                                       self.template)
            else:
                pixels = getattr(f, 'pixels', None)
                dense = f.dense.marked if f.dense is not None else None
                if self.free_per_frame:
                    free = f.free if len(f.free) <= self.free_per_frame else rng.sample(
                        f.free, self.free_per_frame)
                    ex = multitask_example(f.image, f.mark_ids, qs, free, self.template)
                else:
                    ex = grounding_example(f.image, f.mark_ids, qs, self.template)
                ex.reading = self.reading.get(k, [])
            ex.pixel_values = pixels
            if dense is not None:
                ex.dense = torch.from_numpy(dense)
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
            elif (re := self._renumbered(f, rng)) is not None:
                _, _, pixels, dense = re
                pix.append(pixels)
                tgt.append(torch.from_numpy(dense))
            else:
                pix.append(f.pixels)
                tgt.append(torch.from_numpy(f.dense.marked))
        return torch.stack([p.float() for p in pix]), torch.stack(tgt)


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
                 free: bool, label_features: bool = False) -> MarkedScene:
    if not dense and not free:
        return marked_scene(seed, settings, max_expressions=max_expressions)
    return training_frame(seed, settings, max_expressions, grid, dense, free, label_features)


def prepare_frames(seeds: list[int], cfg: TrainConfig, cache: Path | None,
                   desc: str, progress: bool, grid: int = 0) -> list[MarkedScene]:
    """Marked frames for ``seeds`` (cached to ``cache``: training/frames_cache.py)."""
    blob = load_frames(cache) if cache is not None else None
    if blob and blob.get('seeds') == seeds and blob.get('settings') == _cache_key(cfg, grid):
        return blob['frames']
    settings = settings_from_data(cfg.data)
    job = partial(_prepare_one, settings=settings, max_expressions=cfg.data.max_expressions,
                  grid=grid, dense=cfg.dense_weight > 0,
                  free=bool(cfg.data.free_per_frame or cfg.data.vsr_frames),
                  label_features=cfg.data.label_features)
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
        save_frames(cache, {'seeds': seeds, 'settings': _cache_key(cfg, grid), 'frames': frames})
    return frames


def _cache_key(cfg: TrainConfig, grid: int) -> str:
    """What the prepared frames depend on (a stale cache is rebuilt, never reused)."""
    extras = (cfg.dense_weight > 0, bool(cfg.data.free_per_frame or cfg.data.vsr_frames))
    if extras == (False, False):
        return repr(settings_from_data(cfg.data))
    key = f'{settings_from_data(cfg.data)!r} grid={grid} dense,free={extras}'
    return key + (' label_features' if cfg.data.label_features and extras[0] else '')


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


def evaluate_frames(llava, packer: Packer, frames: list[MarkedScene], template: PromptTemplate,
                    dtype: torch.dtype, device: torch.device, batch_size: int = 8,
                    dense_heads=None, forward=None) -> dict:
    """Validation loss and teacher-forced exact-answer accuracy over every query (and,
    with ``dense_heads``, the per-patch heads' accuracies: ``val_dense_mark_on_marks`` is
    how often the number drawn at a patch is read right). ``forward``: the FSDP-wrapped
    ``StepModule`` to call instead of the (sharded) model itself."""
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
            if forward is not None:
                _, per, stats = forward(batch=b, dense_weight=1.0)
            else:
                _, per = answer_loss(llava, b, dense_heads=dense_heads, dense_weight=1.0,
                                     stats=stats)
            loss_sum += stats.pop('answer_loss') * len(b.targets)
            for k, v in stats.items():
                dense_sums.setdefault(k, []).append(v)
            n_targets += len(b.targets)
            hits.append(per)
    llava.train()
    per = torch.cat(hits) if hits else torch.zeros(0)
    relations = [r for f in frames if f.queries for _, _, r in f.queries]
    by_relation: dict[str, list[float]] = {}
    if len(relations) == per.numel():  # one answer per query, in query order
        for r, hit in zip(relations, per.tolist()):
            by_relation.setdefault(r, []).append(hit)
    return {'val_answer_acc': float(per.mean()) if per.numel() else float('nan'),
            'val_answers': int(per.numel()), 'val_loss': loss_sum / max(1, n_targets),
            **{f'val_{k}': round(float(np.mean(v)), 4) for k, v in dense_sums.items()},
            **({'val_acc_by_relation': {r: round(float(np.mean(v)), 4)
                                        for r, v in sorted(by_relation.items())}}
               if by_relation else {})}


def _to(batch, device):
    for name in ('input_ids', 'position_ids', 'attention_mask', 'pixel_values', 'pred_pos',
                 'targets', 'answer_of'):
        setattr(batch, name, getattr(batch, name).to(device))
    return batch


class StepModule(torch.nn.Module):
    """What DDP / FSDP wrap: the LLaVA model and the trainer-only dense heads, with the loss
    as ``forward`` (the wrappers sync gradients only for work done through ``forward``)."""

    def __init__(self, llava, dense_heads=None) -> None:
        super().__init__()
        self.llava = llava
        self.dense_heads = dense_heads

    def forward(self, batch=None, pixels=None, targets=None, reading_weight: float = 0.0,
                dense_weight: float = 0.0):
        """(loss, per-answer exact match or None, stats). ``pixels``/``targets``: the
        vision-only stage (dense heads on the projected image features, no LM)."""
        stats: dict = {}
        if pixels is not None:
            from spatial_llava_ros.training.dense import image_features

            loss, acc = self.dense_heads.loss(image_features(self.llava, pixels), targets)
            return loss, None, {f'dense_{k}': v for k, v in acc.items()}
        loss, per = answer_loss(self.llava, batch, reading_weight, self.dense_heads,
                                dense_weight, stats)
        return loss, per, stats


def _prepare_on_rank0(env: DistEnv, job):
    """Rank 0 builds (and caches) first; the others then read its cache."""
    result = job() if env.is_main else None
    dist.barrier(env)
    return result if env.is_main else job()


def train(cfg: TrainConfig, progress: bool = True) -> TrainResult:
    """Run (or resume) a training run; returns where the loadable checkpoint went.

    One process, or one rank of a ``torchrun`` / ``accelerate launch`` job (DDP or FSDP per
    ``distributed``): ``batch_size`` x ``grad_accum`` is the global batch of a step, drawn
    from (seed, step) alone and split between the ranks, so steps, schedule and data mean
    the same for any number of processes. Only rank 0 writes.
    """
    env = dist.env_from_launcher()
    if env.active and env.world_size > cfg.batch_size:
        raise InputError(f'{env.world_size} processes but batch_size {cfg.batch_size}: every '
                         'rank needs at least one frame per micro-step (batch_size is global)')
    device = dist.init(env, cfg.device)
    try:
        return _train(cfg, env, device, progress and env.is_main)
    finally:
        dist.shutdown(env)


def _train(cfg: TrainConfig, env: DistEnv, device: torch.device, progress: bool
           ) -> TrainResult:
    from spatial_llava_ros.model.families import checkpoint_family
    from spatial_llava_ros.model.loading import load_model

    t_start = time.time()
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    out = Path(cfg.output_dir)
    template = PromptTemplate.load(cfg.data.prompt)
    if env.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / 'train_config.json').write_text(json.dumps(cfg.to_dict(), indent=2) + '\n',
                                               encoding='utf-8')
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)

    base = _prepare_on_rank0(env, lambda: build_base(cfg, out, template))
    if checkpoint_family(base) != 'llava':  # a newer family: LoRA on the same SoM turns
        if env.active:
            raise InputError('a newer-family base (see docs/families.md) trains in one '
                             'process for now; run it without torchrun / accelerate')
        from spatial_llava_ros.training.family_trainer import train_family

        return train_family(cfg, base, template, progress)
    loaded = load_model(base, device=device, dtype='float32')
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

    # ---- data: synthetic frames in memory, or converted records read lazily from disk
    frames: list[MarkedScene] = []
    dataset = None
    vcfg = llava.config.vision_config
    grid = vcfg.image_size // vcfg.patch_size
    if cfg.data.source == 'json':
        from spatial_llava_ros.training.datasets import ConversationDataset

        dataset = ConversationDataset(cfg.data.json_path, cfg.data.image_dir, template, packer)
    else:
        cache = Path(cfg.data.workers_cache) if cfg.data.workers_cache else out / 'frames.pt'
        frames = _prepare_on_rank0(env, lambda: prepare_frames(
            parse_seeds(cfg.data.train_seeds), cfg, cache, 'train', progress, grid))
    if cfg.data.relations:
        keep_relations(frames, cfg.data.relations)
    val_frames = []
    if cfg.data.val_seeds and cfg.data.source == 'synthetic':
        val_frames = _prepare_on_rank0(env, lambda: prepare_frames(
            parse_seeds(cfg.data.val_seeds), cfg, out / 'val_frames.pt', 'val', progress, grid))
    for f in frames + val_frames:  # one preprocessing per frame, reused every epoch
        f.pixels = packer.pixels(Example(f.image, '')).to(torch.float16)
        if f.rgb is not None and cfg.data.vsr_frames:
            f.plain_pixels = packer.pixels(Example(f.rgb, '')).to(torch.float16)
    dense_heads = None
    if cfg.dense_weight > 0:
        from spatial_llava_ros.training.dense import DenseHeads

        dense_heads = DenseHeads(llava.config.text_config.hidden_size,
                                 cfg.dense_head_weights).to(device)
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
    pool = None
    if dataset is None:
        pool = FramePool(frames, [], template, cfg.data.queries_per_frame, reading,
                         cfg.data.free_per_frame, cfg.data.vsr_frames, cfg.data.vsr_per_frame,
                         cfg.data.renumber_marks, cfg.data.text_height_336,
                         lambda img: packer.pixels(Example(img, '')),
                         cfg.data.relation_weights)
    unk = loaded.tokenizer.unk_token_id
    unk_queries = sum(unk in packer.encode(t) for f in frames for t, _, _ in f.queries)

    # ---- resume (weights into the plain module, before any wrapper shards them)
    step_module = StepModule(llava, dense_heads)
    step, history, prior_wall, state = 0, [], 0.0, None
    ckpts = ckpt.checkpoints(out) if cfg.resume else []
    if ckpts:
        state = ckpt.load_state(ckpts[-1])
        if state.get('format') == ckpt.FORMAT:
            step_module.load_state_dict(state['module'])
        else:  # a checkpoint of the single-process trainer before format 2
            model.load_state_dict(state['model'])
            if dense_heads is not None and 'dense_heads' in state:
                dense_heads.load_state_dict(state['dense_heads'])
        step, history, prior_wall = state['step'], state['history'], state.get('wall_s', 0.0)

    # ---- parallel wrapper, then the optimiser over the (maybe sharded) parameters
    # unused trainable parameters are normal here: LLaVA reads the second-to-last ViT layer
    # (the last one gets no gradient when the tower trains), heads idle on some batches
    wrapped = dist.wrap(step_module, cfg.distributed, env, device, find_unused=True)
    params = [p for p in wrapped.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(_param_groups(wrapped, cfg), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg))
    if state is not None:
        if state.get('format') == ckpt.FORMAT:
            dist.load_full_state(wrapped, opt, state['module'], state['optimizer'])
        else:
            opt.load_state_dict(state['optimizer'])
        sched.load_state_dict(state['scheduler'])
        state = None  # free the host copy
    meta = {'trainable_params': sum(p.numel() for p in params),
            'total_params': sum(p.numel() for p in llava.parameters()),
            'train_frames': len(pool.frames) if pool else 0,
            'conversations': len(dataset) if dataset is not None else 0,
            'train_queries': sum(len(f.queries) for f in pool.frames) if pool else 0,
            'unk_queries': unk_queries, 'resumed_from_step': step,
            'world_size': env.world_size,
            'distributed': cfg.distributed if env.active else 'none'}
    log = None
    if env.is_main:
        (out / 'train_meta.json').write_text(json.dumps(meta, indent=2) + '\n',
                                             encoding='utf-8')
        if step:  # lines logged after that checkpoint, before a crash, are done again
            ckpt.truncate_log(out / 'train_log.jsonl', step)
        log = (out / 'train_log.jsonl').open('a', encoding='utf-8')

    last_step = min(cfg.steps, cfg.stop_at or cfg.steps)
    per_micro = cfg.batch_size + (cfg.data.vsr_frames if pool and pool.vsr_pool
                                  and not cfg.vision_only else 0)
    loader = None
    if dataset is not None:
        from spatial_llava_ros.training.datasets import conversation_loader

        loader = iter(conversation_loader(dataset, packer, compute_dtype, cfg.batch_size,
                                          cfg.seed, step * cfg.grad_accum,
                                          last_step * cfg.grad_accum, env, cfg.data.workers))
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=last_step, initial=step, desc='train', unit='step')
    run_start, first_step = time.time(), step
    window: list[float] = []
    dense_window: dict[str, list[float]] = {}
    while step < last_step:
        opt.zero_grad(set_to_none=True)
        loss_sum = 0.0
        for micro in range(cfg.grad_accum):
            t = step * cfg.grad_accum + micro
            kwargs: dict = {}
            if cfg.vision_only:
                pix, tgt = pool.vision_batch(t, cfg.batch_size, cfg.seed)
                kwargs = {'pixels': dist.shard(pix, env).to(device),
                          'targets': dist.shard(tgt, env).to(device)}
                n_local = len(kwargs['pixels'])
            else:
                if loader is not None:
                    batch = _to(next(loader), device)
                else:
                    batch = _to(packer.collate(dist.shard(pool.batch(t, cfg.batch_size,
                                                                     cfg.seed), env),
                                               compute_dtype), device)
                kwargs = {'batch': batch, 'reading_weight': cfg.reading_weight,
                          'dense_weight': cfg.dense_weight}
                n_local = len(batch.targets)
            # each rank's mean is weighted by its share of the global batch's answer tokens
            # (frames in the vision-only stage), so the sum over ranks is the global mean
            (n_global,) = dist.all_sum(env, [n_local], device)
            share = n_local / max(1.0, n_global)
            with dist.no_sync(wrapped, micro < cfg.grad_accum - 1), torch.autocast(
                    device.type, dtype=compute_dtype, enabled=compute_dtype != torch.float32):
                loss, _, stats = wrapped(**kwargs)
                (loss * (share * env.world_size / cfg.grad_accum)).backward()
            stats.pop('answer_loss', None)
            for k, v in stats.items():
                dense_window.setdefault(k, []).append(v)
            loss_sum += float(loss.detach()) * share / cfg.grad_accum
        (loss_sum,) = dist.all_sum(env, [loss_sum], device)
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        sched.step()
        step += 1
        window.append(loss_sum)
        rate = (step - first_step) * per_micro * cfg.grad_accum / max(1e-9,
                                                                       time.time() - run_start)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f'{loss_sum:.3f}', lr=f'{sched.get_last_lr()[0]:.2e}',
                            samples_s=f'{rate:.1f}')
        entry = None
        if step % cfg.log_every == 0 or step == 1 or step == last_step:
            entry = {'step': step, 'loss': float(np.mean(window)), 'lr': sched.get_last_lr()[0],
                     'wall_s': round(prior_wall + time.time() - run_start, 1),
                     'samples_per_s': round(rate, 2),
                     **{k: round(float(np.mean(v)), 4) for k, v in dense_window.items()}}
            window, dense_window = [], {}
        if val_frames and (step % cfg.eval_every == 0 or step == last_step):
            entry = entry or {'step': step, 'wall_s': round(prior_wall + time.time() - run_start,
                                                            1)}
            entry.update(_validate(cfg, env, wrapped, llava, dense_heads, packer, val_frames,
                                   template, compute_dtype, device))
        if entry is not None and log is not None:
            history.append(entry)
            log.write(json.dumps(entry) + '\n')
            log.flush()
        if step % cfg.save_every == 0 or step == last_step:
            module_sd, opt_sd = dist.full_state(wrapped, opt)  # a collective under FSDP
            if env.is_main:
                ckpt.save_state(out, step, module_sd, opt_sd, sched, history,
                                prior_wall + time.time() - run_start, cfg.keep_checkpoints)
            del module_sd, opt_sd
    if bar is not None:
        bar.close()
    if log is not None:
        log.close()
    wall = prior_wall + time.time() - run_start
    final = out / 'final'
    if dist.is_fsdp(wrapped):  # gather the shards; rank 0 exports from a plain copy
        module_sd, _ = dist.full_state(wrapped, None)
        if env.is_main:
            model, loaded, dense_heads = _plain_copy(cfg, base, module_sd)
        del module_sd
    if env.is_main:
        export(model, loaded, final, cfg, base)
        if dense_heads is not None:  # for a next stage; not part of the export
            torch.save(dense_heads.state_dict(), out / 'dense_heads.pt')
        settings_from_data(cfg.data).save(final)
        save_prompt(cfg.data.prompt, final)
        summary = {'steps': step, 'wall_s': round(wall, 1),
                   'total_s': round(time.time() - t_start, 1),
                   'last': history[-1] if history else None, **meta}
        (final / 'train_summary.json').write_text(json.dumps(summary, indent=2) + '\n',
                                                  encoding='utf-8')
    dist.barrier(env)  # nobody leaves before the final model is on disk
    return TrainResult(final, step, wall, history)


def _validate(cfg: TrainConfig, env: DistEnv, wrapped, llava, dense_heads, packer: Packer,
              val_frames: list[MarkedScene], template: PromptTemplate,
              compute_dtype: torch.dtype, device: torch.device) -> dict:
    """Validation on rank 0 (DDP: its full copy) or on every rank (FSDP: the shards must be
    gathered by all); returns {} on ranks that do not log."""
    fsdp = dist.is_fsdp(wrapped)
    if not (env.is_main or fsdp):
        return {}
    if cfg.vision_only:
        from spatial_llava_ros.training.dense import evaluate_dense

        return evaluate_dense(llava, dense_heads, val_frames,
                              forward=wrapped if fsdp else None)
    return evaluate_frames(llava, packer, val_frames, template, compute_dtype, device,
                           dense_heads=dense_heads, forward=wrapped if fsdp else None)


def _plain_copy(cfg: TrainConfig, base: Path, module_sd: dict):
    """An unsharded CPU model with the gathered weights, for rank 0's export under FSDP."""
    from spatial_llava_ros.model.loading import load_model

    loaded = load_model(base, device='cpu', dtype='float32')
    model, llava = _trainable(loaded.model, cfg)
    heads = None
    if any(k.startswith('dense_heads.') for k in module_sd):
        from spatial_llava_ros.training.dense import DenseHeads

        heads = DenseHeads(llava.config.text_config.hidden_size)
    StepModule(llava, heads).load_state_dict(module_sd)
    return model, loaded, heads


def save_prompt(source: str | None, final: Path) -> None:
    """The template the model was trained with goes with it (``PromptTemplate.for_model``)."""
    from spatial_llava_ros.model.prompt import MODEL_PROMPT_FILE
    from spatial_llava_ros.paths import config_path

    src = Path(source) if source else config_path('prompt.yaml')
    (final / MODEL_PROMPT_FILE).write_text(src.read_text(encoding='utf-8'), encoding='utf-8')


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
