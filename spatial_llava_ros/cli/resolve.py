"""``spatial-llava resolve``: which mark of a Set-of-Marks image does a query name?"""

from __future__ import annotations

import argparse
import json

from spatial_llava_ros.cli._common import add_server_args


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
    add_server_args(parser)
    parser.set_defaults(func=run)


def _marks(text: str) -> list[int]:
    from spatial_llava_ros.errors import InputError

    try:
        return [int(t) for t in text.replace(' ', '').split(',') if t]
    except ValueError:
        raise InputError(f'--marks must be comma-separated integers, got {text!r}') from None


def _p(p: float) -> float | None:
    """A probability for JSON: NaN (a server that only generates) is null."""
    return None if p != p else round(p, 6)


def run(args: argparse.Namespace) -> int:
    import numpy as np
    from PIL import Image

    from spatial_llava_ros import paths
    from spatial_llava_ros.errors import InputError
    from spatial_llava_ros.model.prompt import PromptTemplate
    from spatial_llava_ros.model.resolver import Resolver

    try:
        image = np.asarray(Image.open(args.image).convert('RGB'))
    except OSError as exc:
        raise InputError(f'cannot read image {args.image}: {exc}') from exc
    template = PromptTemplate.load(args.prompt) if args.prompt else None
    if args.server:
        from spatial_llava_ros.cli._common import remote_resolver

        resolver = remote_resolver(args, args.threshold)
        if template is not None:
            resolver.template = template
    else:
        resolver = Resolver.from_pretrained(
            paths.model_dir(args.model),
            template=template,
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
                    'confidence': _p(res.confidence),
                    'abstained': res.abstained,
                    'reason': res.reason,
                    'ranked': [[m, _p(p)] for m, p in res.ranked],
                    'scoring': res.scoring,
                    'probabilities': res.probabilities,
                }
            )
        )
    return 0
