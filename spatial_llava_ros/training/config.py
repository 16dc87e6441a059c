"""Training configuration (config/train_*.yaml): model init, data, optimisation, output."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from spatial_llava_ros.errors import InputError


def parse_seeds(spec: str | list | tuple) -> list[int]:
    """``"1000:5000"`` (end exclusive), ``"1,2,7"`` or a list -> seed list."""
    if isinstance(spec, (list, tuple)):
        return [int(s) for s in spec]
    text = str(spec).strip()
    try:
        if ':' not in text:
            return [int(v) for v in text.split(',') if v.strip()]
        start, end = (int(v) for v in text.split(':', 1))
    except ValueError as exc:
        raise InputError(f'cannot parse seeds {text!r}: use START:END or a,b,c') from exc
    if end <= start or start < 0:
        raise InputError(f'seed range {text!r} is empty or negative')
    return list(range(start, end))


@dataclass
class ModelInit:
    """Where the weights start: a local base checkpoint, or the tiny factory (from scratch)."""

    base_path: str | None = None  # local LLaVA checkpoint directory
    image_size: int = 128
    patch_size: int = 16
    vision_hidden: int = 128
    vision_layers: int = 3
    text_hidden: int = 192
    text_layers: int = 4
    heads: int = 4
    vision_feature_layer: int = -2  # LLaVA-1.5 reads the second-to-last ViT layer
    seed: int = 0


@dataclass
class DataConfig:
    """Training data: synthetic scenes from seeds, or a converted LLaVA JSON."""

    source: str = 'synthetic'  # synthetic | json
    json_path: str | None = None  # LLaVA conversations JSON (source: json)
    image_dir: str | None = None  # where its images are (default: next to the JSON)
    train_seeds: str = '100000:102000'
    val_seeds: str = '90000:90050'
    scene_width: int = 128
    scene_height: int = 96
    max_expressions: int = 40
    queries_per_frame: int = 12
    text_height_336: float = 40.0  # mark digit height after a resize to 336 px
    mark_style: str = 'number'
    proposals: str = 'depth'
    # interior | beside | auto: where numbers go (marks/placement.py)
    label_placement: str = 'interior'
    kinds: list[str] = field(default_factory=lambda: ['grounding'])  # + conversation
    free_per_frame: int = 0  # free-form turns (reason, attribute, yes/no) per frame and step
    vsr_frames: int = 0  # unmarked frames per step with true/false captions (VSR wording)
    vsr_per_frame: int = 6  # captions asked per unmarked frame
    # share of training presentations that redraw the frame with its mark numbers shuffled
    # (training/renumber.py): a new lookup from the same frame, no answer to remember
    renumber_marks: float = 0.0
    # how many numberings of a frame the finished model is asked under and votes over
    # (model/votes.py; saved to som_settings.json): worth it with renumber_marks > 0
    renumber_votes: int = 1
    # dense targets: a mark's label patches carry its object's category, colour and ranks
    # too, so small objects keep a token (training/dense.py, label_objects)
    label_features: bool = False
    # prompt template YAML to train with (default: the package's config/prompt.yaml); the
    # trained model carries it as prompt.yaml and the resolver asks in that wording
    prompt: str | None = None
    # train only on queries of these relations (scene/expressions.RELATIONS), e.g. [color]
    # for a curriculum's first phase; validation keeps every relation and reports each
    relations: list[str] | None = None
    # how much more often a frame's queries of a relation are drawn into a step than the
    # others (default 1), e.g. {smallest: 2}: the weak relations get more of the steps
    relation_weights: dict[str, float] | None = None
    workers: int = 1  # processes that render and mark the training frames
    workers_cache: str | None = None  # cache file for the prepared frames (default: out dir)


@dataclass
class TrainConfig:
    output_dir: str = 'runs/train'
    model: ModelInit = field(default_factory=ModelInit)
    data: DataConfig = field(default_factory=DataConfig)
    lm: str = 'full'  # full | lora | frozen
    vision: str = 'train'  # train | frozen  (frozen is the LLaVA recipe; train for scratch)
    # the vision tower's learning rate as a share of lr (vision: train), e.g. 0.1 to let a
    # pretrained tower move slowly under a language model that already reads it
    vision_lr_scale: float = 1.0
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    merge_lora: bool = True  # final checkpoint: merged weights (else adapter + base path)
    steps: int = 1000  # length of the LR schedule
    stop_at: int | None = None  # stop (and export) early at this step; the schedule is unchanged
    batch_size: int = 8  # frames per step
    grad_accum: int = 1
    lr: float = 1e-3
    min_lr_ratio: float = 0.05
    warmup_steps: int = 100
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    reading_weight: float = 0.0  # mark-reading auxiliary loss (synthetic data), 0 = off
    dense_weight: float = 0.0  # per-patch ground-truth heads on the image tokens, 0 = off
    vision_only: bool = False  # pretrain vision + projector on the dense heads alone (no LM)
    dense_heads_from: str | None = None  # dense_heads.pt of an earlier stage (else fresh)
    # relative weight of a dense head in its loss, e.g. {label: 4} (the rest 1)
    dense_head_weights: dict[str, float] = field(default_factory=dict)
    dtype: str = 'auto'  # auto: bf16 on CUDA, float32 on CPU
    device: str | None = None
    gradient_checkpointing: bool = False
    seed: int = 0
    log_every: int = 10
    eval_every: int = 200
    save_every: int = 200
    keep_checkpoints: int = 2
    resume: bool = True
    threads: int | None = None
    distributed: str = 'ddp'  # ddp | fsdp, when launched by torchrun / accelerate launch

    @classmethod
    def load(cls, path: str | Path, overrides: dict | None = None) -> TrainConfig:
        from spatial_llava_ros.paths import read_yaml_mapping

        raw = read_yaml_mapping(path, '', 'train config', empty_ok=True)
        raw.update(overrides or {})
        return cls.from_dict(raw, str(path))

    @classmethod
    def from_dict(cls, raw: dict, where: str = 'config') -> TrainConfig:
        def build(kind, data, name):
            known = {f.name for f in fields(kind)}
            unknown = sorted(set(data) - known)
            if unknown:
                raise InputError(f'{where}: unknown {name} keys {unknown}; known {sorted(known)}')
            return kind(**data)

        raw = dict(raw)
        model = build(ModelInit, raw.pop('model', {}) or {}, 'model')
        data = build(DataConfig, raw.pop('data', {}) or {}, 'data')
        cfg = build(cls, raw, 'top-level')
        cfg.model, cfg.data = model, data
        cfg.validate()
        return cfg

    def validate(self) -> None:
        if self.lm not in ('full', 'lora', 'frozen'):
            raise InputError(f'lm must be full, lora or frozen, got {self.lm!r}')
        if self.vision not in ('train', 'frozen'):
            raise InputError(f'vision must be train or frozen, got {self.vision!r}')
        if self.steps < 1 or self.batch_size < 1 or self.grad_accum < 1:
            raise InputError(f'steps {self.steps}, batch_size {self.batch_size}, grad_accum '
                             f'{self.grad_accum} must all be >= 1')
        if self.distributed not in ('ddp', 'fsdp'):
            raise InputError(f'distributed must be ddp or fsdp, got {self.distributed!r}')
        if self.lr <= 0:
            raise InputError(f'lr must be > 0, got {self.lr}')
        if self.vision_lr_scale <= 0:
            raise InputError(f'vision_lr_scale must be > 0, got {self.vision_lr_scale}')
        if self.dense_head_weights:
            from spatial_llava_ros.training.dense import head_weights

            head_weights(self.dense_head_weights)
        if self.vision_only and (self.dense_weight <= 0 or self.data.source != 'synthetic'):
            raise InputError('vision_only needs dense_weight > 0 and synthetic data')
        from spatial_llava_ros.scene.expressions import RELATIONS

        if self.data.relations is not None:
            unknown = sorted(set(self.data.relations) - set(RELATIONS))
            if unknown or not self.data.relations:
                raise InputError(f'data.relations: unknown {unknown or "(empty list)"}; '
                                 f'choose from {", ".join(RELATIONS)}')
        if self.data.relation_weights is not None:
            weights = self.data.relation_weights
            unknown = sorted(set(weights) - set(RELATIONS))
            if unknown:
                raise InputError(f'data.relation_weights: unknown {unknown}; '
                                 f'choose from {", ".join(RELATIONS)}')
            bad = {k: v for k, v in weights.items()
                   if not isinstance(v, (int, float)) or not v > 0}
            if bad:
                raise InputError(f'data.relation_weights must be numbers > 0, got {bad}')
        from spatial_llava_ros.marks.placement import check_placement

        check_placement(self.data.label_placement)
        from spatial_llava_ros.model.votes import check_votes

        check_votes(self.data.renumber_votes)
        if self.data.source not in ('synthetic', 'json'):
            raise InputError(f'data.source must be synthetic or json, got {self.data.source!r}')
        if self.data.source == 'json' and not self.data.json_path:
            raise InputError('data.source json needs data.json_path')
        overlap = set(parse_seeds(self.data.train_seeds)) & set(parse_seeds(self.data.val_seeds))
        if overlap:
            raise InputError(f'{len(overlap)} seeds are in both train and val, e.g. '
                             f'{sorted(overlap)[:3]}')

    def to_dict(self) -> dict:
        return asdict(self)
