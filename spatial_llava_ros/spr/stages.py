"""SPR stages over files: generate -> score -> pairs (train is in ``dpo.py``).

Layout of an SPR work directory::

    scenes.jsonl        one SceneAnnotation per scene (written when the scene is done)
    regions.jsonl       query regions, with the image their DPO prompt uses
    descriptions.jsonl  sampled descriptions: scene, region, prompt kind, sample, text
    images/             the region-outlined SoM images (PNG)
    scores.jsonl        initial descriptions and their refinements, with scores
    pairs.jsonl         chosen / rejected / prompt / image: the DPO data
    summary_*.json      mean scores

Every stage skips what its output already holds, so an interrupted run picks up where it
stopped; a scene counts as generated only once its scenes.jsonl line is written.
"""

from __future__ import annotations

import logging
import zlib
from pathlib import Path

import numpy as np

from spatial_llava_ros.errors import InputError
from spatial_llava_ros.spr.annotations import SceneAnnotation, annotate
from spatial_llava_ros.spr.jsonl import append_jsonl, read_jsonl, read_optional, write_jsonl
from spatial_llava_ros.spr.prompts import region_prompt, unknown_words
from spatial_llava_ros.spr.refine import best_pair, refine_description
from spatial_llava_ros.spr.regions import QueryRegion, sample_regions
from spatial_llava_ros.spr.scoring import ScoreWeights, score_description

log = logging.getLogger(__name__)


def _tqdm(it, **kw):
    from tqdm.auto import tqdm

    return tqdm(it, **kw)


def scene_annotation(source, settings) -> tuple[SceneAnnotation, np.ndarray]:
    """Annotation and SoM image of one scene, marked the way the model's data was.

    ``source`` is a synthetic scene seed (int) or a SUN-Spot-style scene folder
    (``scene.io.read_scene``): the marks engine marks the frame and every annotated object
    is tied to the mark that overlaps it best (``evaluation.matching.match_marks``).
    """
    if isinstance(source, (int, np.integer)):
        from spatial_llava_ros.training.synthetic import marked_scene

        ms = marked_scene(int(source), settings, keep=True)
        scene, marked, marks_of, scene_id = ms.scene, ms.marked, ms.marks_of, str(source)
    else:
        from spatial_llava_ros.evaluation.matching import match_marks
        from spatial_llava_ros.marks.engine import mark_frame
        from spatial_llava_ros.scene.io import read_scene

        scene = read_scene(source)
        marked = mark_frame(scene.frame.rgb, scene.frame.depth, scene.frame.intrinsics,
                            **settings.marker_kwargs())
        matched = match_marks({m.mark_id: m.mask for m in marked.marks},
                              scene.frame.instance_mask)
        marks_of = {inst: mark for inst, (mark, _) in matched.items()}
        scene_id = Path(source).name
    ann = annotate(scene_id, scene.objects, scene.frame.instance_mask,
                   {m.mark_id: m.mask for m in marked.marks}, marks_of,
                   scene.frame.camera_pose)
    return ann, marked.image


def scene_sources(seeds: list[int] | None = None, scenes_dir: str | Path | None = None
                  ) -> list:
    """Seeds, or every scene folder (holding annotation.json) under ``scenes_dir``."""
    if scenes_dir is None:
        return list(seeds or [])
    root = Path(scenes_dir)
    if not root.is_dir():
        raise InputError(f'scenes dir {root} is not a directory')
    if (root / 'annotation.json').is_file():
        return [root]
    found = sorted(p.parent for p in root.glob('*/annotation.json'))
    if not found:
        raise InputError(f'no scene folders (*/annotation.json) under {root}')
    names = [p.name for p in found]
    if len(set(names)) != len(names):
        raise InputError(f'scene folder names under {root} are not unique')
    return found


def _scene_id(source) -> str:
    return str(source) if isinstance(source, (int, np.integer)) else Path(source).name


def generate(resolver, out_dir: str | Path, seeds: list, cfg: dict, settings,
             progress: bool = True) -> dict:
    """Steps 1-2: grow regions on each scene and sample grounded descriptions of them.

    ``seeds``: synthetic scene seeds and/or scene folders (see ``scene_sources``).
    """
    from PIL import Image

    out = Path(out_dir)
    (out / 'images').mkdir(parents=True, exist_ok=True)
    done = {r['scene_id'] for r in read_optional(out / 'scenes.jsonl')}
    pcfg, scfg, dcfg = cfg['prompts'], cfg['sampling'], cfg['data']
    for kind in pcfg['kinds']:
        unk = unknown_words(resolver.tokenizer, pcfg['questions'][kind])
        if unk:
            log.warning('prompt %r has %d words this tokenizer does not know: %s', kind,
                        len(unk), ' '.join(unk))
    n_samples = int(scfg['samples_per_prompt']) if scfg['do_sample'] else 1
    gen = ({'do_sample': True, 'temperature': float(scfg['temperature']),
            'top_p': float(scfg['top_p'])} if scfg['do_sample'] else {'do_sample': False})
    stats = {'scenes': 0, 'skipped_done': 0, 'no_region': 0, 'regions': 0, 'descriptions': 0}
    todo = [s for s in seeds if _scene_id(s) not in done]
    stats['skipped_done'] = len(seeds) - len(todo)
    import torch

    for seed in _tqdm(todo, desc='spr generate', unit='scene', disable=not progress):
        ann, som = scene_annotation(seed, settings)
        key = (int(seed) if isinstance(seed, (int, np.integer))
               else zlib.crc32(ann.scene_id.encode()))
        rng = np.random.default_rng([int(dcfg['seed']), key])
        regions = sample_regions(ann, int(dcfg['regions_per_scene']), rng,
                                 int(dcfg['min_objects']), int(dcfg['min_size']))
        region_rows, desc_rows = [], []
        for region in regions:
            image_name = f'images/{ann.scene_id}_r{region.region_id}.png'
            train_img, train_q = region_prompt(pcfg['train_kind'], som, region, pcfg)
            Image.fromarray(train_img).save(out / image_name)
            torch.manual_seed(int(dcfg['seed']) * 1_000_003 + key * 101 + region.region_id)
            for kind in pcfg['kinds']:
                image, question = region_prompt(kind, som, region, pcfg)
                for k in range(n_samples):
                    text = resolver.answer(image, question, int(scfg['max_new_tokens']), **gen)
                    desc_rows.append({'scene_id': ann.scene_id, 'region_id': region.region_id,
                                      'kind': kind, 'sample': k, 'question': question,
                                      'text': text})
            region_rows.append({**region.to_dict(), 'image': image_name,
                                'question': train_q})
        append_jsonl(out / 'descriptions.jsonl', desc_rows)
        append_jsonl(out / 'regions.jsonl', region_rows)
        append_jsonl(out / 'scenes.jsonl', [ann.to_dict()])
        stats['scenes'] += 1
        stats['no_region'] += not regions
        stats['regions'] += len(regions)
        stats['descriptions'] += len(desc_rows)
    return stats


def _load_done(out: Path) -> tuple[dict, dict, list[dict]]:
    scenes = {r['scene_id']: SceneAnnotation.from_dict(r)
              for r in read_jsonl(out / 'scenes.jsonl')}
    regions = {(r['scene_id'], int(r['region_id'])): r for r in read_jsonl(out / 'regions.jsonl')
               if r['scene_id'] in scenes}
    descs = [d for d in read_jsonl(out / 'descriptions.jsonl')
             if (d['scene_id'], int(d['region_id'])) in regions]
    return scenes, regions, descs


def score(out_dir: str | Path, cfg: dict, progress: bool = True) -> dict:
    """Step 3 and the scoring half of step 4: score each description, refine it, re-score."""
    out = Path(out_dir)
    scenes, regions, descs = _load_done(out)
    weights = ScoreWeights(**{k: float(v) for k, v in cfg['score'].items()})
    have = {(r['scene_id'], r['region_id'], r['kind'], r['sample'])
            for r in read_optional(out / 'scores.jsonl') if r['role'] == 'initial'}
    rows: list[dict] = []
    n_new = 0
    for d in _tqdm(descs, desc='spr score', unit='desc', disable=not progress):
        key = (d['scene_id'], int(d['region_id']), d['kind'], int(d['sample']))
        if key in have:
            continue
        ann = scenes[d['scene_id']]
        region = QueryRegion.from_dict(regions[(d['scene_id'], int(d['region_id']))])
        base = {'scene_id': key[0], 'region_id': key[1], 'kind': key[2], 'sample': key[3]}
        for ref in refine_description(d['text'], region, ann):
            rows.append({**base, 'role': 'refined', 'refinement': ref.kind, 'text': ref.text,
                         'score': score_description(ref.text, region, ann, weights).to_dict()})
        # the initial row goes last: once it is on disk, so are its refinements
        rows.append({**base, 'role': 'initial', 'text': d['text'],
                     'score': score_description(d['text'], region, ann, weights).to_dict()})
        n_new += 1
        if len(rows) >= 256:
            append_jsonl(out / 'scores.jsonl', rows)
            rows = []
    append_jsonl(out / 'scores.jsonl', rows)
    return {'scored': n_new, 'already': len(have), **summarize(out)}


def summarize(out_dir: str | Path) -> dict:
    """Mean scores of initial descriptions (all, and per prompt kind) and of refinements."""
    rows = read_optional(Path(out_dir) / 'scores.jsonl')
    out: dict = {}
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r['role'], []).append(r)
        if r['role'] == 'initial':
            groups.setdefault(f'initial_{r["kind"]}', []).append(r)
    for name, items in sorted(groups.items()):
        out[name] = {'n': len(items)} | {
            k: round(float(np.mean([i['score'][k] for i in items])), 4)
            for k in ('semantic', 'localization', 'total', 'coverage', 'mean_iou')}
        out[name]['grounded_share'] = round(
            float(np.mean([i['score']['n_groundings'] > 0 for i in items])), 4)
        out[name]['matched_share'] = round(
            float(np.mean([i['score']['n_matched'] > 0 for i in items])), 4)
    return out


def pairs(out_dir: str | Path, cfg: dict) -> dict:
    """Rest of step 4: per region, best refinement (chosen) vs worst initial (rejected)."""
    out = Path(out_dir)
    scenes, regions, _ = _load_done(out)
    by_region: dict[tuple, dict[str, list[dict]]] = {}
    rows_in = list(read_jsonl(out / 'scores.jsonl'))
    complete = {(r['scene_id'], r['region_id'], r['kind'], r['sample'])
                for r in rows_in if r['role'] == 'initial'}
    for r in rows_in:
        if (r['scene_id'], r['region_id'], r['kind'], r['sample']) not in complete:
            continue  # refinements of a description whose scoring was cut short
        by_region.setdefault((r['scene_id'], int(r['region_id'])), {}).setdefault(
            r['role'], []).append(r)
    rows, skipped = [], 0
    margin = float(cfg['pairs']['min_margin'])
    for key in sorted(by_region, key=lambda k: (int(k[0]) if k[0].isdigit() else k[0], k[1])):
        if key not in regions:
            continue
        got = best_pair(by_region[key].get('initial', []), by_region[key].get('refined', []),
                        margin)
        if got is None:
            skipped += 1
            continue
        chosen, rejected = got
        reg = regions[key]
        rows.append({'id': f'{key[0]}_r{key[1]}', 'image': reg['image'],
                     'question': reg['question'], 'chosen': chosen['text'],
                     'rejected': rejected['text'], 'chosen_score': chosen['score'],
                     'rejected_score': rejected['score'],
                     'chosen_from': f'{chosen["kind"]}/{chosen.get("refinement")}',
                     'rejected_from': rejected['kind']})
    n = write_jsonl(out / 'pairs.jsonl', rows)
    if n == 0:
        raise InputError(f'no preference pairs from {len(by_region)} scored regions in {out} '
                         f'(all {skipped} below min_margin {margin} or identical)')
    return {'pairs': n, 'regions_without_pair': skipped,
            'mean_margin': round(float(np.mean([r['chosen_score']['total']
                                                - r['rejected_score']['total']
                                                for r in rows])), 4)}
