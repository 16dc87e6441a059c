"""``spatial-llava demo``: the whole core path on a generated scene, no ROS and no robot.

scene -> marks -> resolver -> 3D target -> navigation goal, printed as JSON, with the
marked image and the answer drawn to files.
"""

from __future__ import annotations

import argparse

from spatial_llava_ros.cli._common import add_model_args


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        'demo', help='run scene -> marks -> resolver -> goal on a synthetic scene',
        description='Generate a synthetic RGB-D scene, mark it, ask the model which mark a '
        'referring expression means, and print the 3D target and the navigation goal.')
    parser.add_argument('--seed', type=int, default=7, help='scene seed (default: 7)')
    parser.add_argument('--query', default=None,
                        help='referring expression (default: one generated for the scene)')
    parser.add_argument('--speech', default=None, metavar='F.wav',
                        help='take the query from a spoken command in a WAV file')
    parser.add_argument('--out', default='demo_out', help='output directory (default: demo_out)')
    parser.add_argument('--style', default=None,
                        help="mark style: number|contour|box|tint (default: the model's own)")
    parser.add_argument('--standoff', type=float, default=0.8,
                        help='navigation goal distance from the target, metres')
    add_model_args(parser)
    parser.set_defaults(func=run)


def _query_from_speech(path: str, scene) -> str:
    from spatial_llava_ros.errors import InputError
    from spatial_llava_ros.speech import transcribe_file

    transcript = transcribe_file(path, scene_vocabulary=scene)
    if not transcript.heard:
        raise InputError(f'no command heard in {path}')
    print(f'heard: "{transcript.text}" (confidence {transcript.confidence:.2f})')
    return transcript.query if getattr(transcript, 'query', None) else transcript.text


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from spatial_llava_ros.cli._common import (
        draw_answer,
        load_resolver,
        marker_kwargs,
        settings_dir,
        write_rgb,
    )
    from spatial_llava_ros.evaluation.matching import match_marks
    from spatial_llava_ros.marks.engine import mark_frame
    from spatial_llava_ros.pipeline import (
        NAVIGATE,
        FrameRecord,
        PipelineConfig,
        QueryRequest,
        TransformTable,
        resolve_query,
    )
    from spatial_llava_ros.scene import generate_scene
    from spatial_llava_ros.scene.bag import OPTICAL_FRAME, tf_chain
    from spatial_llava_ros.training.synthetic import SomSettings

    resolver = load_resolver(args)
    scene = generate_scene(args.seed)
    frame = scene.frame
    marker = marker_kwargs(settings_dir(resolver, args))
    if args.style:
        marker['style'] = args.style
    marked = mark_frame(frame.rgb, frame.depth, frame.intrinsics, stamp_ns=frame.stamp_ns,
                        **marker)
    expected = None
    if args.speech:
        query = _query_from_speech(args.speech, scene)
    elif args.query:
        query = args.query
    else:
        expression = scene.expressions[0]
        query = expression.text
        matches = match_marks({m.mark_id: m.mask for m in marked.marks}, frame.instance_mask)
        expected = matches.get(expression.target_id, (None, 0.0))[0]
    som = SomSettings.for_model(settings_dir(resolver, args))
    record = FrameRecord.from_marked_frame(marked, OPTICAL_FRAME,
                                           marker=marker)
    outcome = resolve_query(QueryRequest(query, NAVIGATE), record, resolver,
                            TransformTable.from_edges(tf_chain(frame.camera_pose)),
                            PipelineConfig(standoff=args.standoff,
                                           renumber_votes=som.renumber_votes),
                            now_ns=frame.stamp_ns)
    out = Path(args.out)
    write_rgb(out / 'marked.png', marked.image)
    write_rgb(out / 'answer.png', draw_answer(marked, outcome, query))
    result = outcome.to_dict()
    result['model'] = str(resolver.loaded.path)
    if expected is not None:
        result['expected_mark_id'] = int(expected)
    (out / 'result.json').write_text(json.dumps(result, indent=2))
    print(f'scene seed {args.seed}: {len(marked.marks)} marks; query: "{query}"')
    print(json.dumps(result, indent=2))
    print(f'wrote {out / "marked.png"}, {out / "answer.png"}, {out / "result.json"}')
    return 0 if outcome.success else 1
