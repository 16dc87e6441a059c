"""SUN-Spot-style annotation folders -> SoM-marked images + LLaVA-1.5 conversation JSON.

Input: one folder per image in the scene schema of ``scene.io`` (rgb.png, depth, instances.png,
annotation.json with objects, expressions and true/false captions): the synthetic test-bed's
export, or real data a user lays out the same way. Marks are drawn by the marks engine,
either on the ground-truth instance masks (``marks='gt'``: every annotated landmark gets a
number, as in SUN-Spot) or on its own proposals (``marks='engine'``: what the robot will
see at run time, objects tied to marks by best IoU). The train/validation split is by scene
(a stable hash of the folder name), never by question.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spatial_llava_ros.errors import InputError
from spatial_llava_ros.evaluation.matching import match_marks
from spatial_llava_ros.training.conversations import llava_record, load_templates, scene_turns
from spatial_llava_ros.training.synthetic import SomSettings


@dataclass
class ConvertSummary:
    scenes: int
    train_records: int
    val_records: int
    turns: int
    skipped: list[str]
    kinds: dict[str, int]
    out_dir: str

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def find_scene_dirs(root: str | Path) -> list[Path]:
    """Every folder under ``root`` holding an annotation.json, sorted."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f'annotations directory {root} does not exist')
    dirs = sorted({p.parent for p in root.rglob('annotation.json')})
    if not dirs:
        raise InputError(f'no annotation.json under {root}')
    return dirs


def is_val(name: str, val_fraction: float) -> bool:
    """Stable scene-level split: the same folder name always lands on the same side."""
    digest = hashlib.sha1(name.encode('utf-8')).digest()
    return int.from_bytes(digest[:4], 'big') / 2**32 < val_fraction


def mark_scene(scene, settings: SomSettings, marks: str = 'gt'):
    """(marked image, mark ids, instance id -> mark id) for one scene."""
    from spatial_llava_ros.marks.engine import mark_frame

    frame = scene.frame
    kwargs = settings.marker_kwargs()
    if marks == 'gt':
        ids = [o.instance_id for o in scene.objects
               if (frame.instance_mask == o.instance_id).any()]
        dets = [frame.instance_mask == i for i in ids]
        kwargs['proposals'] = 'detections'
        marked = mark_frame(frame.rgb, frame.depth, frame.intrinsics, detections=dets, **kwargs)
    elif marks == 'engine':
        marked = mark_frame(frame.rgb, frame.depth, frame.intrinsics, **kwargs)
    else:
        raise InputError(f"marks must be 'gt' or 'engine', got {marks!r}")
    matched = match_marks({m.mark_id: m.mask for m in marked.marks}, frame.instance_mask)
    return marked.image, [m.mark_id for m in marked.marks], \
        {inst: mark for inst, (mark, _) in matched.items()}


def convert(annotations: str | Path, out_dir: str | Path, val_fraction: float = 0.1,
            marks: str = 'gt', settings: SomSettings | None = None, seed: int = 0,
            max_turns: int = 12, templates_path: str | Path | None = None,
            progress: bool = False) -> ConvertSummary:
    """Write out_dir/images/*.png, out_dir/train.json, out_dir/val.json, out_dir/summary.json."""
    from PIL import Image

    from spatial_llava_ros.scene.io import read_scene

    if not 0.0 <= val_fraction < 1.0:
        raise InputError(f'val_fraction must be in [0, 1), got {val_fraction}')
    templates = load_templates(templates_path)
    settings = settings or SomSettings()
    root = Path(annotations)
    dirs = find_scene_dirs(root)
    out = Path(out_dir)
    (out / 'images').mkdir(parents=True, exist_ok=True)
    train, val, skipped = [], [], []
    kinds: dict[str, int] = {}
    it = dirs
    if progress:
        from tqdm import tqdm

        it = tqdm(dirs, desc='convert', unit='scene')
    for i, d in enumerate(it):
        name = d.relative_to(root).as_posix() if d != root else d.name
        name = name.replace('/', '__') or d.name
        scene = read_scene(d)
        image, mark_ids, marks_of = mark_scene(scene, settings, marks)
        turns = scene_turns(scene, marks_of, templates, seed=seed + i, max_turns=max_turns)
        if not turns:
            skipped.append(f'{name}: no question could be tied to a mark '
                           f'({len(scene.expressions)} expressions, {len(mark_ids)} marks)')
            continue
        rel = f'images/{name}.png'
        Image.fromarray(np.ascontiguousarray(image)).save(out / rel)
        record = llava_record(name, rel, turns, mark_ids, {'seed': scene.seed})
        (val if is_val(name, val_fraction) else train).append(record)
        for t in turns:
            kinds[t.kind] = kinds.get(t.kind, 0) + 1
    for split, records in (('train', train), ('val', val)):
        (out / f'{split}.json').write_text(json.dumps(records, indent=1) + '\n',
                                           encoding='utf-8')
    summary = ConvertSummary(len(dirs), len(train), len(val), sum(kinds.values()), skipped,
                             kinds, str(out))
    (out / 'summary.json').write_text(json.dumps(summary.to_dict(), indent=1) + '\n',
                                      encoding='utf-8')
    return summary
