"""``spatial-llava eval grounding|vsr``: grounding accuracy on synthetic scenes, zero-shot VSR."""

from __future__ import annotations

import argparse

from spatial_llava_ros.cli._common import add_server_args


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        'eval', help='evaluate a model: grounding on synthetic scenes, or VSR true/false',
        description='Evaluation of a Spatial-LLaVA checkpoint (default: the shipped model).')
    sub = parser.add_subparsers(dest='eval_command', metavar='WHAT')
    sub.required = True

    g = sub.add_parser('grounding', help='top-1 mark accuracy per relation on synthetic scenes',
                       description='Render and mark the scenes of --seeds, score every '
                       'referring expression, write F.json (top-level accuracy, per relation), '
                       'F.md (table) and F.png (accuracy vs relation).')
    g.add_argument('--seeds', required=True, help='START:END (end exclusive), e.g. 0:500')
    g.add_argument('--out', required=True, help='output JSON path')
    g.add_argument('--model', default=None, help='model directory (default: the shipped model)')
    g.add_argument('--device', default=None, help='cpu, cuda (default: auto)')
    g.add_argument('--scene-size', default=None,
                   help='WxH to render at (default: the size the model was trained on)')
    g.add_argument('--proposals', default=None, choices=['depth', 'color'],
                   help="mark proposals (default: the model's som_settings.json); color: "
                   'colour-only segmentation, as for a camera without depth')
    g.add_argument('--votes', type=int, default=None, metavar='N',
                   help='ask each frame under N numberings of its marks and vote '
                   "(default: the model's som_settings.json renumber_votes; 1 = off)")
    g.add_argument('--no-plot', action='store_true', help='skip the PNG')
    g.add_argument('--no-progress', action='store_true')
    add_server_args(g)
    g.set_defaults(func=run_grounding)

    d = sub.add_parser('describe', help='free-form answers: is the right target mark named?',
                       description='Ask the grounding_reason questions on synthetic scenes, '
                       'generate answers, and report how often the first number is the '
                       "target's mark and the later ones its landmarks' marks.")
    d.add_argument('--seeds', required=True, help='START:END (end exclusive), e.g. 0:100')
    d.add_argument('--out', required=True, help='output JSON path')
    d.add_argument('--model', default=None, help='model directory (default: the shipped model)')
    d.add_argument('--device', default=None)
    d.add_argument('--per-scene', type=int, default=4, help='questions per scene (default 4)')
    d.add_argument('--no-progress', action='store_true')
    d.set_defaults(func=run_describe)

    v = sub.add_parser('vsr', help="zero-shot true/false accuracy in VSR's jsonl format",
                       description='Asks the model whether each caption is true of its image '
                       'and reports accuracy per relation and per VSR meta-category.')
    v.add_argument('--data', required=True, help='VSR jsonl (image, caption, label, relation)')
    v.add_argument('--images', required=True, help='directory holding the images')
    v.add_argument('--model', default=None, help='model directory (default: the shipped model)')
    v.add_argument('--device', default=None)
    v.add_argument('--out', default=None, help='write the scores JSON here (and a .md table)')
    v.add_argument('--no-progress', action='store_true')
    v.set_defaults(func=run_vsr)


def _model_dir(arg):
    from spatial_llava_ros.paths import model_dir

    return model_dir(arg)


def run_grounding(args: argparse.Namespace) -> int:
    import dataclasses
    import json

    from spatial_llava_ros.errors import InputError
    from spatial_llava_ros.evaluation.grounding import evaluate_grounding, write_report
    from spatial_llava_ros.model.resolver import Resolver
    from spatial_llava_ros.training.config import parse_seeds
    from spatial_llava_ros.training.synthetic import SomSettings

    seeds = parse_seeds(args.seeds)
    model = _model_dir(args.model)
    settings = SomSettings.for_model(model)
    if args.scene_size:
        try:
            w, h = (int(v) for v in args.scene_size.lower().split('x'))
        except ValueError as exc:
            raise InputError(f'--scene-size must be WxH, got {args.scene_size!r}') from exc
        settings = dataclasses.replace(settings, scene_width=w, scene_height=h)
    if args.proposals:
        settings = dataclasses.replace(settings, proposals=args.proposals)
    if args.votes is not None:
        from spatial_llava_ros.model.votes import check_votes

        settings = dataclasses.replace(settings, renumber_votes=check_votes(args.votes))
    if args.server:  # the marks still follow --model's (or the shipped model's) settings
        from spatial_llava_ros.cli._common import remote_resolver

        resolver = remote_resolver(args)
    else:
        resolver = Resolver.from_pretrained(model, device=args.device)
    report = evaluate_grounding(resolver, seeds, settings, progress=not args.no_progress)
    report['model'] = args.server_model or args.server if args.server else str(model)
    files = write_report(report, args.out, plot=not args.no_plot)
    print(json.dumps({'accuracy': round(report['accuracy'], 4),
                      'accuracy_matched': round(report['accuracy_matched'], 4),
                      'random_baseline': round(report['random_baseline'], 4),
                      'n_queries': report['n_queries'], 'files': [str(f) for f in files]}))
    return 0


def run_describe(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from spatial_llava_ros.evaluation.describe import evaluate_descriptions
    from spatial_llava_ros.model.resolver import Resolver
    from spatial_llava_ros.training.config import parse_seeds
    from spatial_llava_ros.training.synthetic import SomSettings

    model = _model_dir(args.model)
    resolver = Resolver.from_pretrained(model, device=args.device)
    report = evaluate_descriptions(resolver, parse_seeds(args.seeds), SomSettings.for_model(model),
                                   per_scene=args.per_scene, progress=not args.no_progress)
    report['model'] = str(model)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + '\n', encoding='utf-8')
    print(json.dumps({k: report[k] for k in ('target_named', 'anchor_named',
                                             'target_and_anchor_named', 'n_questions')}))
    return 0


def run_vsr(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from spatial_llava_ros.evaluation.vsr import (
        YesNoPredictor,
        evaluate_vsr,
        load_vsr_jsonl,
        vsr_markdown,
    )
    from spatial_llava_ros.model.loading import load_model

    items = load_vsr_jsonl(args.data)
    loaded = load_model(_model_dir(args.model), device=args.device)
    scores = evaluate_vsr(items, args.images, YesNoPredictor(loaded),
                          progress=not args.no_progress)
    print(vsr_markdown(scores))
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(scores, indent=2) + '\n', encoding='utf-8')
        out.with_suffix('.md').write_text(vsr_markdown(scores), encoding='utf-8')
    return 0
