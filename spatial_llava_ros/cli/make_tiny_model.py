"""``spatial-llava make-tiny-model DIR``: a tiny random LLaVA checkpoint built locally."""

from __future__ import annotations

import argparse

from spatial_llava_ros.model.tiny_families import FAMILIES


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        'make-tiny-model',
        help='write a tiny random LLaVA checkpoint (tokenizer + processor built locally)',
        description='Write a tiny random LLaVA-architecture checkpoint (CLIP + Llama, '
        'word-level tokenizer with digits and <image>, CLIP processor) in the '
        'llava-hf layout. Used by tests and as a base for training a small model.',
    )
    parser.add_argument('out_dir', metavar='DIR', help='output directory (created)')
    parser.add_argument(
        '--family', default='llava', choices=FAMILIES,
        help='model family (default llava = LLaVA-1.5); the others keep their real image '
        'geometry, special tokens and chat template, with --text-hidden/--text-layers/--heads '
        'as the width and depth of both towers',
    )
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--image-size', type=int, default=32, help='square input size, px')
    parser.add_argument('--patch-size', type=int, default=8)
    parser.add_argument('--vision-hidden', type=int, default=32)
    parser.add_argument('--vision-layers', type=int, default=2)
    parser.add_argument('--text-hidden', type=int, default=32)
    parser.add_argument('--text-layers', type=int, default=2)
    parser.add_argument('--heads', type=int, default=4)
    parser.add_argument(
        '--words', default='', help='extra vocabulary: a text file with words, or a quoted list'
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from spatial_llava_ros.errors import InputError
    from spatial_llava_ros.model.tiny import make_tiny_model, words_of

    words: list[str] = []
    if args.words:
        src = Path(args.words)
        words = words_of(src.read_text(encoding='utf-8') if src.is_file() else args.words)
    if args.family != 'llava':
        from spatial_llava_ros.model.tiny_families import make_family_model

        out = make_family_model(args.out_dir, args.family, seed=args.seed,
                                hidden=args.text_hidden, layers=args.text_layers,
                                heads=args.heads)
        size = sum(f.stat().st_size for f in out.iterdir() if f.is_file())
        print(f'wrote tiny {args.family} checkpoint to {out} ({size / 1e6:.2f} MB)')
        return 0
    if args.image_size % args.patch_size:
        raise InputError(
            f'--image-size {args.image_size} is not a multiple of --patch-size {args.patch_size}'
        )
    out = make_tiny_model(
        args.out_dir,
        seed=args.seed,
        image_size=args.image_size,
        patch_size=args.patch_size,
        vision_hidden=args.vision_hidden,
        vision_layers=args.vision_layers,
        text_hidden=args.text_hidden,
        text_layers=args.text_layers,
        heads=args.heads,
        words=words,
    )
    size = sum(f.stat().st_size for f in out.iterdir() if f.is_file())
    print(f'wrote tiny LLaVA checkpoint to {out} ({size / 1e6:.2f} MB)')
    return 0
