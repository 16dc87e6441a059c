"""``spatial-llava train --config config/train_*.yaml``: fine-tune or train from scratch."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        'train', help='train a Spatial-LLaVA checkpoint (LLaVA recipe, LoRA or full)',
        description='Train on synthetic scenes or a converted LLaVA conversations JSON. The '
        'final checkpoint (OUTPUT_DIR/final) loads in the resolver unchanged. Re-running with '
        'the same output dir resumes from its latest checkpoint. Under torchrun or accelerate '
        'launch the same command runs data-parallel (distributed: ddp | fsdp in the config).')
    parser.add_argument('--config', required=True, help='train config YAML (config/train_*.yaml)')
    parser.add_argument('--output-dir', help='override output_dir')
    parser.add_argument('--steps', type=int, help='override steps')
    parser.add_argument('--base-path', help='override model.base_path (start from a checkpoint)')
    parser.add_argument('--stop-at', type=int,
                        help='stop (and export) after this step; the schedule keeps --steps')
    parser.add_argument('--frames-cache', help='prepared-frames cache file (reused if present)')
    parser.add_argument('--dense-heads-from',
                        help="override dense_heads_from (an earlier stage's dense_heads.pt)")
    parser.add_argument('--no-resume', action='store_true', help='ignore existing checkpoints')
    parser.add_argument('--device', help='cpu, cuda, cuda:1 (default: CUDA when present)')
    parser.add_argument('--no-progress', action='store_true', help='no progress bars')
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from spatial_llava_ros.training.config import TrainConfig
    from spatial_llava_ros.training.distributed import env_from_launcher
    from spatial_llava_ros.training.trainer import train

    overrides: dict = {}
    if args.output_dir:
        overrides['output_dir'] = args.output_dir
    if args.steps:
        overrides['steps'] = args.steps
    if args.stop_at:
        overrides['stop_at'] = args.stop_at
    if args.no_resume:
        overrides['resume'] = False
    if args.device:
        overrides['device'] = args.device
    cfg = TrainConfig.load(args.config, overrides)
    if args.base_path:
        cfg.model.base_path = args.base_path
    if args.frames_cache:
        cfg.data.workers_cache = args.frames_cache
    if args.dense_heads_from:
        cfg.dense_heads_from = args.dense_heads_from
    result = train(cfg, progress=not args.no_progress)
    if env_from_launcher().is_main:  # one summary line per job, not one per rank
        last = result.history[-1] if result.history else {}
        print(json.dumps({'final': str(result.final_dir), 'steps': result.steps,
                          'wall_s': round(result.wall_s, 1), 'last': last}))
    return 0
