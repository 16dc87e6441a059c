"""``spatial-llava bag --out F.mcap``: a ROS 2 bag of a camera moving through a scene."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        'bag',
        help='write a ROS 2 bag (MCAP) of a synthetic RGB-D camera trajectory',
        description='Render a short smooth camera trajectory through a generated scene and write '
        'it with real ROS 2 message types (no ROS needed): /camera/color/image_raw (rgb8), '
        '/camera/depth/image_raw (32FC1 metres or 16UC1 mm), /camera/color/camera_info, '
        '/tf (map -> base_link -> camera_link) and /tf_static (camera_link -> '
        'camera_color_optical_frame). An --out ending in .mcap gives one MCAP file, any other '
        'path a rosbag2 folder.',
    )
    parser.add_argument('--out', required=True, metavar='F.mcap', help='output .mcap file '
                        '(or folder for a rosbag2 directory bag)')
    parser.add_argument('--seed', type=int, default=0, help='scene seed (default 0)')
    parser.add_argument('--frames', type=int, default=30, help='number of frames (30)')
    parser.add_argument('--fps', type=float, default=10.0, help='frame rate, Hz (10)')
    parser.add_argument('--width', type=int, default=640, help='image width, px (640)')
    parser.add_argument('--height', type=int, default=480, help='image height, px (480)')
    parser.add_argument('--depth-encoding', choices=('32FC1', '16UC1'), default='32FC1',
                        help='depth image encoding (32FC1 metres)')
    parser.add_argument('--distro', choices=('humble', 'jazzy'), default='humble',
                        help='message definitions to embed (humble)')
    parser.add_argument('--compress', action='store_true',
                        help='zstd-compress MCAP chunks (smaller, slower)')
    parser.add_argument('--force', action='store_true', help='replace an existing output')
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from spatial_llava_ros.scene.bag import write_bag
    from spatial_llava_ros.scene.trajectory import render_trajectory

    traj = render_trajectory(args.seed, args.frames, args.width, args.height, fps=args.fps)
    out = write_bag(traj.frames, args.out, depth_encoding=args.depth_encoding,
                    distro=args.distro, overwrite=args.force,
                    compress=args.compress)
    size = sum(p.stat().st_size for p in out.rglob('*')) if out.is_dir() else out.stat().st_size
    print(f'wrote {len(traj.frames)} frames of scene {args.seed} ({args.width}x{args.height}, '
          f'{args.fps:g} Hz) to {out} ({size / 1e6:.1f} MB)')
    return 0
