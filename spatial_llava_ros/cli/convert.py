"""``spatial-llava convert``: SUN-Spot-style annotations -> SoM images + LLaVA conversations."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        'convert', help='annotation folders -> Set-of-Marks images + LLaVA conversation JSON',
        description='Reads every folder with an annotation.json under --annotations (the '
        'scene schema: synthetic exports or real data laid out the same way), draws marks, '
        'and writes images/, train.json and val.json (split by scene) in the LLaVA-1.5 '
        '"conversations" format. Wording comes from config/conversation_templates.yaml.')
    parser.add_argument('--annotations', required=True, help='root folder of scene folders')
    parser.add_argument('--out', required=True, help='output folder')
    parser.add_argument('--val-fraction', type=float, default=0.1,
                        help='share of scenes for validation (default 0.1)')
    parser.add_argument('--marks', choices=('gt', 'engine'), default='gt',
                        help='draw marks on ground-truth masks (default) or on the marks '
                        "engine's own proposals")
    parser.add_argument('--text-height', type=float, default=14.0,
                        help='mark digit height in px after a resize to 336 (default 14)')
    parser.add_argument('--templates', default=None, help='conversation templates YAML')
    parser.add_argument('--max-turns', type=int, default=12, help='turns per image (default 12)')
    parser.add_argument('--seed', type=int, default=0, help='template choice seed')
    parser.add_argument('--no-progress', action='store_true')
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from spatial_llava_ros.training.convert import convert
    from spatial_llava_ros.training.synthetic import SomSettings

    summary = convert(args.annotations, args.out, val_fraction=args.val_fraction,
                      marks=args.marks, settings=SomSettings(text_height_336=args.text_height),
                      seed=args.seed, max_turns=args.max_turns, templates_path=args.templates,
                      progress=not args.no_progress)
    print(json.dumps(summary.to_dict()))
    return 0
