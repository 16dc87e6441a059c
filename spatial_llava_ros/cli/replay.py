"""``spatial-llava replay``: the resolver node's core path on a recorded ROS 2 bag, no ROS.

Frames are marked in order with one tracking ``MarkEngine`` (as the marker node does), the
query is answered on the chosen frame, and tf from the bag places the goal in ``map``.
"""

from __future__ import annotations

import argparse

from spatial_llava_ros.cli._common import add_model_args


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        'replay', help='answer a query on a recorded bag (MCAP / rosbag2 / ROS 1)',
        description='Read colour, depth, camera_info and tf from a bag, mark the frames, '
        'answer the query on one frame and print the result and the goal pose.')
    parser.add_argument('--bag', required=True, help='bag file or rosbag2 folder')
    parser.add_argument('--query', required=True, action='append',
                        help='referring expression; repeat for several')
    parser.add_argument('--frame', type=int, default=-1,
                        help='index of the frame to answer on (default: -1, the last)')
    parser.add_argument('--action', choices=('locate', 'navigate', 'manipulate'),
                        default='navigate')
    parser.add_argument('--target-frame', default='map', help='frame of the goal (default: map)')
    parser.add_argument('--base-frame', default='base_link', help="robot frame ('' = camera)")
    parser.add_argument('--standoff', type=float, default=0.8, help='goal distance, metres')
    parser.add_argument('--color-topic', default='/camera/color/image_raw')
    parser.add_argument('--depth-topic', default='/camera/depth/image_raw')
    parser.add_argument('--info-topic', default='/camera/color/camera_info')
    parser.add_argument('--out', default=None, help='write the marked/answer images here')
    add_model_args(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from tqdm import tqdm

    from spatial_llava_ros.cli._common import (
        draw_answer,
        load_resolver,
        marker_kwargs,
        settings_dir,
        write_rgb,
    )
    from spatial_llava_ros.errors import InputError
    from spatial_llava_ros.marks.engine import MarkEngine, MarkerConfig
    from spatial_llava_ros.pipeline import (
        ACTION_NAMES,
        FrameRecord,
        PipelineConfig,
        QueryRequest,
        TransformTable,
        resolve_query,
    )
    from spatial_llava_ros.scene.bag import read_bag

    frames = list(read_bag(args.bag, color_topic=args.color_topic,
                           depth_topic=args.depth_topic, info_topic=args.info_topic))
    if not frames:
        raise InputError(f'{args.bag}: no colour frame with matching depth and camera_info')
    if not -len(frames) <= args.frame < len(frames):
        raise InputError(f'--frame {args.frame} out of range: the bag has {len(frames)} frames')
    index = args.frame % len(frames)
    resolver = load_resolver(args)
    marker = marker_kwargs(settings_dir(resolver, args))
    engine = MarkEngine(MarkerConfig.from_kwargs(**marker))
    marked = None
    for bag_frame in tqdm(frames[:index + 1], desc='marking', unit='frame', leave=False):
        marked = engine.process(bag_frame.rgb, bag_frame.depth, bag_frame.intrinsics,
                                stamp_ns=bag_frame.stamp_ns)
    chosen = frames[index]
    action = {name: code for code, name in ACTION_NAMES.items()}[args.action]
    from spatial_llava_ros.training.synthetic import SomSettings

    record = FrameRecord.from_marked_frame(marked, chosen.frame_id,
                                           marker=marker)
    config = PipelineConfig(target_frame=args.target_frame, base_frame=args.base_frame,
                            standoff=args.standoff, max_frame_age=0.0,
                            renumber_votes=SomSettings.for_model(
                                settings_dir(resolver, args)).renumber_votes)
    tf = TransformTable.from_edges(chosen.transforms)
    failures = 0
    for n, query in enumerate(args.query):
        outcome = resolve_query(QueryRequest(query, action), record, resolver, tf, config,
                                now_ns=chosen.stamp_ns)
        failures += not outcome.success
        result = outcome.to_dict()
        result['frame_index'] = index
        result['marks'] = len(marked.marks)
        print(json.dumps(result))
        if args.out:
            write_rgb(Path(args.out) / f'answer_{n}.png', draw_answer(marked, outcome, query))
    if args.out:
        write_rgb(Path(args.out) / 'marked.png', marked.image)
    return 1 if failures else 0
