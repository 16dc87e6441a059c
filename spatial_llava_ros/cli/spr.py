"""``spatial-llava spr generate|score|pairs|train``: Spatial Preference Rewarding.

Each stage reads the files the previous one wrote in a work directory and skips what its
own output already holds, so a long run can be stopped and started again (docs/spr.md).
"""

from __future__ import annotations

import argparse
import json


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        'spr',
        help='SPR preference data from region descriptions, and DPO on it',
        description='Spatial Preference Rewarding (arXiv 2510.14374): grow query regions, '
        'sample grounded region descriptions from a model, score them (semantic + '
        'localization), refine their groundings, pair best refinement vs worst initial, '
        'train with DPO. Stages: generate -> score -> pairs -> train.',
    )
    sub = parser.add_subparsers(dest='spr_stage', metavar='STAGE')
    sub.required = True

    gen = sub.add_parser('generate', help='regions + sampled descriptions (resumable)',
                         description='Grow query regions on synthetic scenes and sample '
                         'grounded descriptions from the model with every prompt kind.')
    gen.add_argument('work', metavar='WORK', help='SPR work directory (created)')
    gen.add_argument('--model', default=None, help='checkpoint dir (default: bundled model)')
    gen.add_argument('--seeds', default=None, help='START:END or a,b,c (default: config)')
    gen.add_argument('--scenes-dir', default=None,
                     help='SUN-Spot-style scene folders (*/annotation.json) instead of seeds')
    gen.add_argument('--config', default=None, help='SPR YAML (default: config/spr.yaml)')
    gen.add_argument('--kinds', default=None, help='prompt kinds, e.g. marked,crop,refs')
    gen.add_argument('--samples', type=int, default=None, help='samples per prompt kind')
    gen.add_argument('--greedy', action='store_true', help='one greedy answer per prompt')
    _common(gen)

    sco = sub.add_parser('score', help='score + refine descriptions (resumable)',
                         description='Semantic and localization scores of every description, '
                         'its refinements and theirs; prints mean scores as JSON.')
    sco.add_argument('work', metavar='WORK')
    sco.add_argument('--config', default=None)
    sco.add_argument('--summary', default=None, help='also write the mean scores here (JSON)')
    sco.add_argument('--no-progress', action='store_true')

    pai = sub.add_parser('pairs', help='preference pairs (best refinement vs worst initial)',
                         description='Write WORK/pairs.jsonl for DPO.')
    pai.add_argument('work', metavar='WORK')
    pai.add_argument('--config', default=None)

    tra = sub.add_parser('train', help='DPO with trl + LoRA (resumable)',
                         description='DPO on WORK/pairs.jsonl; writes a PEFT adapter that '
                         'load_model / the resolver load directly.')
    tra.add_argument('work', metavar='WORK')
    tra.add_argument('--out', required=True, help='output directory (adapter + checkpoints)')
    tra.add_argument('--model', default=None, help='checkpoint dir (default: bundled model)')
    tra.add_argument('--config', default=None, help='DPO YAML (default: config/spr_train.yaml)')
    tra.add_argument('--max-steps', type=int, default=None)
    tra.add_argument('--no-resume', action='store_true', help='ignore OUT/checkpoint-*')
    _common(tra)
    parser.set_defaults(func=run)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument('--device', default=None, help='cpu, cuda (default: auto)')
    p.add_argument('--dtype', default=None, help='bf16, fp16, fp32 (default: auto)')
    p.add_argument('--threads', type=int, default=None, help='torch CPU threads')
    p.add_argument('--no-progress', action='store_true')


def _threads(args) -> None:
    if getattr(args, 'threads', None):
        import torch

        torch.set_num_threads(int(args.threads))


def run(args: argparse.Namespace) -> int:
    import logging

    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(name)s: %(message)s')
    stage = args.spr_stage
    if stage == 'train':
        return _train(args)
    from spatial_llava_ros.spr import stages
    from spatial_llava_ros.spr.config import load_spr_config

    cfg = load_spr_config(args.config)
    if stage == 'generate':
        return _generate(args, cfg)
    if stage == 'score':
        result = stages.score(args.work, cfg, progress=not args.no_progress)
        if args.summary:
            from pathlib import Path

            Path(args.summary).parent.mkdir(parents=True, exist_ok=True)
            Path(args.summary).write_text(json.dumps(result, indent=2) + '\n', encoding='utf-8')
        print(json.dumps(result))
        return 0
    print(json.dumps(stages.pairs(args.work, cfg)))
    return 0


def _generate(args, cfg) -> int:
    import dataclasses
    from pathlib import Path

    from spatial_llava_ros.errors import InputError
    from spatial_llava_ros.model.resolver import Resolver
    from spatial_llava_ros.paths import model_dir
    from spatial_llava_ros.spr import stages
    from spatial_llava_ros.training.config import parse_seeds
    from spatial_llava_ros.training.synthetic import SomSettings

    _threads(args)
    if args.kinds:
        cfg['prompts']['kinds'] = [k.strip() for k in args.kinds.split(',') if k.strip()]
        bad = [k for k in cfg['prompts']['kinds'] if k not in ('marked', 'crop', 'refs')]
        if bad:
            raise InputError(f'--kinds {args.kinds!r}: unknown {bad}; use marked,crop,refs')
    if args.samples is not None:
        if args.samples < 1:
            raise InputError(f'--samples must be >= 1, got {args.samples}')
        cfg['sampling']['samples_per_prompt'] = args.samples
    if args.greedy:
        cfg['sampling']['do_sample'] = False
    seeds = stages.scene_sources(
        None if args.scenes_dir else parse_seeds(args.seeds or cfg['data']['seeds']),
        args.scenes_dir)
    if not seeds:
        raise InputError('no scenes to describe (empty --seeds)')
    model = model_dir(args.model)
    settings = SomSettings.for_model(model)
    if cfg['data']['scene_width'] and cfg['data']['scene_height']:
        settings = dataclasses.replace(settings, scene_width=int(cfg['data']['scene_width']),
                                       scene_height=int(cfg['data']['scene_height']))
    resolver = Resolver.from_pretrained(model, device=args.device, dtype=args.dtype)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    (work / 'spr_config.json').write_text(json.dumps(
        {'model': str(model), 'scenes': [str(seeds[0]), str(seeds[-1]), len(seeds)], **cfg},
        indent=2) + '\n', encoding='utf-8')
    stats = stages.generate(resolver, work, seeds, cfg, settings, progress=not args.no_progress)
    print(json.dumps(stats))
    return 0


def _train(args) -> int:
    from spatial_llava_ros.paths import model_dir
    from spatial_llava_ros.spr.config import load_train_config
    from spatial_llava_ros.spr.dpo import train_dpo

    _threads(args)
    cfg = load_train_config(args.config)
    if args.max_steps is not None:
        cfg['max_steps'] = args.max_steps
    metrics = train_dpo(model_dir(args.model), args.work, args.out, cfg, device=args.device,
                        dtype=args.dtype, resume=not args.no_resume,
                        progress=not args.no_progress)
    metrics.pop('log', None)
    print(json.dumps(metrics))
    return 0
