"""``spatial-llava resolve``: which mark of a Set-of-Marks image does a query name?"""

from __future__ import annotations

import argparse
import json


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        'resolve',
        help='score every mark of a marked image for a spatial query',
        description='Load a local LLaVA / Spatial-LLaVA checkpoint and print the probability '
        'of every mark for the query (one forward pass), best first, as JSON.',
    )
    parser.add_argument('--image', required=True, help='the Set-of-Marks image (png/jpg)')
    parser.add_argument('--marks', required=True, help='mark ids present, e.g. 1,2,3,12')
    parser.add_argument('--query', required=True, action='append', help='repeat for a batch')
    parser.add_argument('--model', default=None, help='checkpoint dir (default: bundled model)')
    parser.add_argument('--adapter', default=None, help='PEFT LoRA adapter dir')
    parser.add_argument('--device', default=None, help='cpu, cuda, cuda:1 (default: auto)')
    parser.add_argument('--dtype', default=None, help='bf16, fp16, fp32 (default: auto)')
    parser.add_argument('--threshold', type=float, default=0.0, help='abstain below this p')
    parser.add_argument('--prompt', default=None, help='prompt template YAML')
    parser.set_defaults(func=run)


def _marks(text: str) -> list[int]:
    from spatial_llava_ros.errors import InputError

    try:
        return [int(t) for t in text.replace(' ', '').split(',') if t]
    except ValueError:
        raise InputError(f'--marks must be comma-separated integers, got {text!r}') from None


def run(args: argparse.Namespace) -> int:
    import numpy as np
    from PIL import Image

    from spatial_llava_ros import paths
    from spatial_llava_ros.errors import InputError
    from spatial_llava_ros.model.prompt import PromptTemplate
    from spatial_llava_ros.model.resolver import Resolver

    model_dir = paths.model_dir(args.model)
    try:
        image = np.asarray(Image.open(args.image).convert('RGB'))
    except OSError as exc:
        raise InputError(f'cannot read image {args.image}: {exc}') from exc
    resolver = Resolver.from_pretrained(
        model_dir,
        template=PromptTemplate.load(args.prompt) if args.prompt else None,
        abstain_threshold=args.threshold,
        device=args.device,
        dtype=args.dtype,
        adapter=args.adapter,
    )
    results = resolver.score_batch(image, _marks(args.marks), args.query)
    for res in results:
        print(
            json.dumps(
                {
                    'query': res.query,
                    'best_id': res.best_id,
                    'confidence': round(res.confidence, 6),
                    'abstained': res.abstained,
                    'reason': res.reason,
                    'ranked': [[m, round(p, 6)] for m, p in res.ranked],
                }
            )
        )
    return 0
