"""Marks on real frames: how many marks each real frame gets, and a picture.

Real frames from scikit-image's bundled data (the dev extra; test/real_frames.py): four
photographs with colour-only proposals and the Middlebury "Motorcycle" RGB-D frame (stereo
disparity turned into metric depth) with depth proposals, each marked with ``interior`` and
``auto`` placement. Counts the marks, the pairs of labels that touch (< 2 px apart) and the
marks dropped for want of a free place; writes the motorcycle side by side.

    python bench/marks_real_frames.py --out bench/results/marks_real_frames.json \
        --picture docs/img/marks_real_auto.png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'test'))


def touching(rects) -> int:
    n = 0
    for i, a in enumerate(rects):
        for b in rects[i + 1:]:
            n += max(a[0] - b[2], b[0] - a[2], a[1] - b[3], b[1] - a[3]) < 2
    return n


def main() -> None:
    import cv2
    from real_frames import PHOTOS, motorcycle_rgbd, photo

    from spatial_llava_ros.marks.engine import mark_frame

    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--out', type=Path, required=True)
    ap.add_argument('--picture', type=Path)
    ap.add_argument('--text-height', type=float, default=20.0)
    args = ap.parse_args()
    frames = {'motorcycle (RGB-D, depth)': (motorcycle_rgbd(), 'depth')}
    frames.update({f'{n} (photo, colour)': ((photo(n), None, None), 'color') for n in PHOTOS})
    rows, panels = {}, []
    for name, ((rgb, depth, k), proposals) in frames.items():
        for placement in ('interior', 'auto'):
            m = mark_frame(rgb, depth, k, proposals=proposals, label_placement=placement,
                           text_height_336=args.text_height)
            dropped = sum(int(n.split()[0]) for n in m.notes if 'no free place' in n)
            rows[f'{name} {placement}'] = {
                'size': f'{rgb.shape[1]}x{rgb.shape[0]}', 'marks': len(m.marks),
                'touching_label_pairs': touching([m_.label_rect for m_ in m.marks]),
                'dropped_no_place': dropped}
            if name.startswith('motorcycle'):
                panels.append(m.image)
    report = {'text_height_336': args.text_height, 'max_marks': 40, 'frames': rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + '\n', encoding='utf-8')
    if args.picture:
        cv2.imwrite(str(args.picture), cv2.cvtColor(np.concatenate(panels, 1), cv2.COLOR_RGB2BGR))
    print(json.dumps(report, indent=1))


if __name__ == '__main__':
    main()
