"""``spatial-llava mark``: draw Set-of-Marks numbers on one image (optionally RGB-D).

    spatial-llava mark --image rgb.png --depth depth.png --intrinsics K.json --out marked.png

``--depth`` is a 16-bit PNG in millimetres (0 = no reading) or a .npy of float metres
(NaN = no reading); ``--intrinsics`` a JSON object with fx, fy, cx, cy, width, height.
Prints one line per mark (or JSON with ``--json``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        'mark', help='draw numbered marks on an image (RGB or RGB-D)',
        description='Propose object masks (depth planes + depth edges, colour segmentation, '
        'external boxes or a local SAM checkpoint), number them and write the marked image.')
    parser.add_argument('--image', required=True, help='colour image (png/jpg; grey is fine)')
    parser.add_argument('--depth', default=None,
                        help='depth: 16-bit PNG in millimetres, or .npy float metres')
    parser.add_argument('--intrinsics', default=None,
                        help='JSON with fx, fy, cx, cy, width, height (needed with --depth)')
    parser.add_argument('--out', default=None, help='where to write the marked image (png)')
    parser.add_argument('--style', default='number',
                        choices=['number', 'contour', 'box', 'tint'])
    parser.add_argument('--proposals', default=None,
                        choices=['depth', 'color', 'detections', 'sam'],
                        help='mask source (default: depth with --depth, else color)')
    parser.add_argument('--detections', default=None,
                        help='JSON list of {"box": [x0, y0, x1, y1], "label": .., "score": ..}')
    parser.add_argument('--sam-path', default=None, help='local SAM checkpoint directory')
    parser.add_argument('--max-marks', type=int, default=40)
    parser.add_argument('--min-area', type=int, default=120, help='pixels')
    parser.add_argument('--placement', default='auto', choices=('auto', 'interior', 'beside'),
                        help='where numbers go: auto (default; on the object unless the '
                             'number would hide a third of it, then beside, with a leader '
                             'line when further out; labels never touch), interior, beside')
    parser.add_argument('--json', action='store_true',
                        help='print the marks as JSON (each with its label_rect and leader)')
    parser.set_defaults(func=run)


def _read_image(path: Path):
    import cv2

    from spatial_llava_ros.errors import InputError

    if not path.is_file():
        raise FileNotFoundError(f'no such image: {path}')
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise InputError(f'cannot decode image {path}')
    if img.ndim == 2:
        return img, 'mono16' if img.dtype.name == 'uint16' else 'mono8'
    if img.dtype.name != 'uint8':
        raise InputError(f'{path}: colour image must be 8-bit, got {img.dtype}')
    return img, 'bgra8' if img.shape[2] == 4 else 'bgr8'


def _read_depth(path: Path):
    import cv2
    import numpy as np

    from spatial_llava_ros.errors import InputError

    if not path.is_file():
        raise FileNotFoundError(f'no such depth file: {path}')
    if path.suffix.lower() == '.npy':
        arr = np.load(path, allow_pickle=False)
        enc = '16UC1' if arr.dtype == np.uint16 else '32FC1'
        return arr.astype(np.float32) if enc == '32FC1' else arr, enc
    arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise InputError(f'cannot decode depth image {path}')
    if arr.dtype != np.uint16 or arr.ndim != 2:
        raise InputError(f'{path}: depth PNG must be single-channel 16-bit millimetres, got '
                         f'{arr.dtype} with shape {arr.shape}')
    return arr, '16UC1'


def _read_intrinsics(path: Path):
    from spatial_llava_ros.camera_types import CameraIntrinsics
    from spatial_llava_ros.errors import InputError

    if not path.is_file():
        raise FileNotFoundError(f'no such intrinsics file: {path}')
    try:
        data = json.loads(path.read_text())
        return CameraIntrinsics.from_dict(data)
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f'{path}: intrinsics need numbers fx, fy, cx, cy, width, height '
                         f'({type(exc).__name__}: {exc})') from exc


def run(args: argparse.Namespace) -> int:
    import cv2

    from spatial_llava_ros.errors import InputError
    from spatial_llava_ros.marks.engine import mark_frame

    image, encoding = _read_image(Path(args.image))
    depth = depth_enc = intrinsics = None
    if args.depth:
        depth, depth_enc = _read_depth(Path(args.depth))
        if not args.intrinsics:
            raise InputError('--depth needs --intrinsics (a JSON with fx, fy, cx, cy, width, '
                             'height)')
    if args.intrinsics:
        intrinsics = _read_intrinsics(Path(args.intrinsics))
    detections = None
    if args.detections:
        det_path = Path(args.detections)
        if not det_path.is_file():
            raise FileNotFoundError(f'no such detections file: {det_path}')
        detections = json.loads(det_path.read_text())
    proposals = args.proposals or ('detections' if detections is not None
                                   else 'depth' if depth is not None else 'color')
    marked = mark_frame(image, depth, intrinsics, detections=detections, rgb_encoding=encoding,
                        depth_encoding=depth_enc, proposals=proposals, style=args.style,
                        sam_path=args.sam_path, max_marks=args.max_marks,
                        min_area=args.min_area, label_placement=args.placement)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(out), cv2.cvtColor(marked.image, cv2.COLOR_RGB2BGR)):
            raise InputError(f'could not write {out} (unknown extension?)')
    rows = [m.to_dict() for m in marked.marks]
    if args.json:
        print(json.dumps({'proposals': proposals, 'marks': rows, 'notes': marked.notes,
                          'out': args.out}, indent=2))
    else:
        print(f'{"id":>3} {"pixels":>7} {"box":<22} {"anchor":<11} centroid (m, camera)')
        for r in rows:
            c = 'none' if r['centroid'] is None else ' '.join(f'{v:+.3f}' for v in r['centroid'])
            box = ','.join(map(str, r['box']))
            anchor = ','.join(map(str, r['anchor']))
            print(f'{r["mark_id"]:>3} {r["pixel_count"]:>7} {box:<22} {anchor:<11} {c}')
        for note in marked.notes:
            print(f'note: {note}')
        print(f'{len(rows)} marks ({proposals})' + (f'; wrote {args.out}' if args.out else ''))
    return 0
