"""Zero-shot Visual Spatial Reasoning (VSR) evaluation: true/false captions about an image.

VSR (Liu et al., TACL 2023) ships jsonl lines ``{"image", "caption", "label", "relation", ...}``;
the score is plain accuracy, reported per relation and per the paper's seven meta-categories.
The model is asked whether the caption is true and its yes/no answer is compared with ``label``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spatial_llava_ros.errors import InputError

# The relation -> meta-category table of VSR's analysis_scripts/rel_meta_category_dict.txt.
META_CATEGORIES: dict[str, tuple[str, ...]] = {
    'Adjacency': ('adjacent to', 'alongside', 'at the side of', 'at the right side of',
                  'at the left side of', 'attached to', 'at the back of', 'ahead of', 'against',
                  'at the edge of'),
    'Directional': ('off', 'past', 'toward', 'down', 'deep down', 'up', 'away from', 'along',
                    'around', 'from', 'into', 'to', 'across', 'across from', 'through',
                    'down from'),
    'Orientation': ('facing', 'facing away from', 'parallel to', 'perpendicular to'),
    'Projective': ('on top of', 'beneath', 'beside', 'behind', 'left of', 'right of', 'under',
                   'in front of', 'below', 'above', 'over', 'in the middle of'),
    'Proximity': ('by', 'close to', 'near', 'far from', 'far away from'),
    'Topological': ('connected to', 'detached from', 'has as a part', 'part of', 'contains',
                    'within', 'at', 'on', 'in', 'with', 'surrounding', 'among', 'consists of',
                    'out of', 'between', 'inside', 'outside', 'touching'),
    # 'among' is listed twice in VSR's table; like its dict-building script, the later wins.
    'Unallocated': ('beyond', 'next to', 'opposite to', 'after', 'among', 'enclosed by'),
}
RELATION_TO_META: dict[str, str] = {
    rel: meta for meta, rels in META_CATEGORIES.items() for rel in rels
}
# Synthetic relation names of the scene generator that are not spelled as in VSR.
_SYNONYMS = {'nearest': 'near', 'farthest': 'far from', 'next': 'next to'}


def normalise_relation(relation: str) -> str:
    """``left_of`` / ``Left Of`` -> ``left of`` (VSR's spelling)."""
    rel = ' '.join(relation.replace('_', ' ').strip().lower().split())
    return _SYNONYMS.get(rel, rel)


def meta_category(relation: str) -> str:
    """VSR meta-category of a relation; relations outside VSR's 66 go to ``Unallocated``."""
    return RELATION_TO_META.get(normalise_relation(relation), 'Unallocated')


@dataclass(frozen=True)
class VsrItem:
    """One VSR line: is ``caption`` true of ``image``?"""

    image: str
    caption: str
    label: bool
    relation: str


def load_vsr_jsonl(path: str | Path) -> list[VsrItem]:
    """Read a VSR jsonl file; InputError naming the line for anything malformed."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f'VSR file {path} does not exist')
    items: list[VsrItem] = []
    with path.open(encoding='utf-8') as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f'{path}:{lineno}: not JSON ({exc.msg} at col {exc.colno})') \
                    from exc
            missing = [k for k in ('image', 'caption', 'label', 'relation') if k not in row]
            if missing:
                raise InputError(f'{path}:{lineno}: missing keys {missing}')
            label = row['label']
            if label not in (0, 1, True, False):
                raise InputError(f'{path}:{lineno}: label must be 0/1, got {label!r}')
            items.append(VsrItem(str(row['image']), str(row['caption']), bool(label),
                                 str(row['relation'])))
    if not items:
        raise InputError(f'VSR file {path} has 0 lines')
    return items


def _bucket(pairs: Iterable[tuple[str, bool]]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for key, ok in pairs:
        entry = out.setdefault(key, {'n': 0, 'correct': 0})
        entry['n'] += 1
        entry['correct'] += int(ok)
    for entry in out.values():
        entry['accuracy'] = entry['correct'] / entry['n']
    return dict(sorted(out.items()))


def vsr_scores(items: list[VsrItem], predictions: list[bool]) -> dict:
    """Accuracy overall, per relation and per meta-category (the VSR paper's breakdown)."""
    if len(items) != len(predictions):
        raise InputError(f'{len(items)} VSR items but {len(predictions)} predictions')
    if not items:
        raise InputError('no VSR items to score')
    correct = [bool(p) == it.label for it, p in zip(items, predictions)]
    n_true = sum(it.label for it in items)
    return {
        'accuracy': float(np.mean(correct)),
        'n': len(items),
        'n_true': int(n_true),
        'majority_baseline': max(n_true, len(items) - n_true) / len(items),
        'per_relation': _bucket((normalise_relation(it.relation), ok)
                                for it, ok in zip(items, correct)),
        'per_meta_category': _bucket((meta_category(it.relation), ok)
                                     for it, ok in zip(items, correct)),
    }


def evaluate_vsr(items: list[VsrItem], images_dir: str | Path,
                 predict: Callable[[np.ndarray, str], bool],
                 progress: bool = False) -> dict:
    """Run ``predict(rgb, caption) -> bool`` on every item and score it.

    Images are read from ``images_dir / item.image``; a missing image is an InputError
    (counting it wrong would hide a broken path).
    """
    from PIL import Image

    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise InputError(f'VSR image directory {images_dir} does not exist')
    iterator: Iterable[VsrItem] = items
    if progress:
        from tqdm import tqdm

        iterator = tqdm(items, desc='vsr', unit='caption')
    cache: dict[str, np.ndarray] = {}
    predictions: list[bool] = []
    for item in iterator:
        if item.image not in cache:
            path = images_dir / item.image
            if not path.is_file():
                raise InputError(f'VSR image {path} not found ({len(items)} captions)')
            cache = {item.image: np.asarray(Image.open(path).convert('RGB'))}
        predictions.append(bool(predict(cache[item.image], item.caption)))
    return vsr_scores(items, predictions)


def vsr_markdown(scores: dict) -> str:
    """Markdown tables of a ``vsr_scores`` result."""
    lines = [f"VSR accuracy: **{scores['accuracy']:.3f}** on {scores['n']} captions "
             f"(majority baseline {scores['majority_baseline']:.3f})", '',
             '| meta-category | n | accuracy |', '|---|---:|---:|']
    for name, entry in scores['per_meta_category'].items():
        lines.append(f"| {name} | {entry['n']} | {entry['accuracy']:.3f} |")
    lines += ['', '| relation | n | accuracy |', '|---|---:|---:|']
    for name, entry in scores['per_relation'].items():
        lines.append(f"| {name} | {entry['n']} | {entry['accuracy']:.3f} |")
    return '\n'.join(lines) + '\n'


QUESTION = 'Is this true: {caption} Answer yes or no.'


class YesNoPredictor:
    """Zero-shot true/false from a LLaVA checkpoint: compare log P(" yes") and log P(" no").

    Both answers are scored exactly (with </s>) after the template's free-answer prompt,
    so no generation or answer parsing is involved.
    """

    def __init__(self, loaded, template=None, question: str = QUESTION) -> None:
        from spatial_llava_ros.model.prompt import PromptTemplate
        from spatial_llava_ros.training.packing import Packer

        self.loaded = loaded
        self.model = loaded.model.eval()
        self.template = template or PromptTemplate.for_model(loaded.path)
        self.question = question
        self.packer = Packer(loaded.tokenizer, loaded.image_token_id,
                             self.model.config.image_seq_length,
                             loaded.processor.image_processor)

    def __call__(self, image: np.ndarray, caption: str) -> bool:
        from spatial_llava_ros.training.packing import Example, Segment, branch_logprobs

        caption = caption.strip()
        if caption and caption[-1] not in '.?!':
            caption += '.'
        prefix = self.template.question_text(self.question.format(caption=caption))
        ex = Example(image, prefix, [[Segment(' yes', target=True, eos=True)],
                                     [Segment(' no', target=True, eos=True)]])
        yes, no = branch_logprobs(self.model, self.packer, ex)
        return yes > no


def write_synthetic_vsr(seeds: list[int], out_dir: str | Path, width: int = 320,
                        height: int = 240) -> tuple[Path, Path]:
    """VSR-format jsonl + PNG images from synthetic scenes' true/false captions.

    Lets the VSR evaluation run end to end where the real VSR/COCO files are absent.
    """
    from PIL import Image

    from spatial_llava_ros.scene.generate import generate_scene

    out = Path(out_dir)
    (out / 'images').mkdir(parents=True, exist_ok=True)
    lines = []
    for seed in seeds:
        scene = generate_scene(int(seed), width, height)
        name = f'scene_{seed:06d}.png'
        Image.fromarray(scene.frame.rgb).save(out / 'images' / name)
        for cap in scene.vsr_captions:
            text = cap.caption[0].upper() + cap.caption[1:]
            lines.append(json.dumps({'image': name, 'caption': f'{text}.',
                                     'label': int(cap.label),
                                     'relation': normalise_relation(cap.relation)}))
    data = out / 'synthetic_vsr.jsonl'
    data.write_text('\n'.join(lines) + '\n', encoding='utf-8')
    return data, out / 'images'
