"""``spatial-llava scene --seed N --out DIR``: write one synthetic RGB-D scene with its truth."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        'scene',
        help='write a synthetic RGB-D scene (PNG, NPY, annotation JSON)',
        description='Generate a deterministic indoor scene from a seed and write rgb.png, '
        'depth.npy (float32 metres, NaN invalid), depth.png (uint16 millimetres, 0 invalid), '
        'instances.png (uint16 ids, 0 background), intrinsics.json and annotation.json '
        '(objects with 2D/3D boxes, referring expressions with targets, true/false captions). '
        'Schema: docs/scene.md.',
    )
    parser.add_argument('--seed', type=int, default=0, help='scene seed (default 0)')
    parser.add_argument('--out', required=True, metavar='DIR', help='output folder (created)')
    parser.add_argument('--width', type=int, default=640, help='image width, px (640)')
    parser.add_argument('--height', type=int, default=480, help='image height, px (480)')
    parser.add_argument('--objects', type=int, default=None, metavar='N',
                        help='objects to place, 3-12 (default: drawn from the seed); ones that '
                        'do not fit or end up hidden are left out')
    parser.add_argument('--preview', metavar='PNG', default=None,
                        help='also write a picture: RGB | depth | instances side by side')
    parser.add_argument('--preview-scale', type=float, default=0.5, metavar='S',
                        help='size of each preview panel relative to the image (0.5)')
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from collections import Counter

    from spatial_llava_ros.scene.generate import generate_scene_and_layout
    from spatial_llava_ros.scene.io import write_scene

    scene, layout = generate_scene_and_layout(args.seed, args.width, args.height,
                                              n_objects=args.objects)
    out = write_scene(scene, args.out, room=layout.room.to_dict())
    cats = Counter(o.category for o in scene.objects)
    print(f'wrote scene {args.seed} ({args.width}x{args.height}) to {out}: '
          f'{len(scene.objects)} objects ({", ".join(f"{n} {c}" for c, n in cats.items())}), '
          f'{len(scene.expressions)} expressions, {len(scene.vsr_captions)} captions')
    if args.preview:
        from spatial_llava_ros.scene.preview import write_preview

        print(f'preview: {write_preview(scene.frame, args.preview, args.preview_scale)}')
    for expr in scene.expressions[:3]:
        print(f'  "{expr.text}" -> object {expr.target_id} ({expr.relation})')
    return 0
