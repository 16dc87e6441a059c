"""Evaluate the marks engine on synthetic scenes the tests never use.

Measures, against the renderer's ground-truth instance masks and depth:
- instance recall at IoU >= 0.5 for objects of at least ``--min-px`` visible pixels,
  per category, for depth and colour-only proposals;
- 3D centroid error: mark centroid vs the mean of the object's GT mask back-projected
  with the rendered depth (its visible surface), for objects that were found;
- id stability along ``render_trajectory`` sequences: among consecutive frame pairs in
  which an object is marked in both frames, the share where it keeps its number;
- time per frame (wall clock, this process, one thread).

Writes JSON (``--out``) and a markdown table (``--md``) for docs/marks.md.

    .venv/bin/python scripts/eval_marks.py --seeds 100000:100200 --trajectories 100000:100010
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from spatial_llava_ros.geometry.camera import masked_centroid  # noqa: E402
from spatial_llava_ros.marks import MarkEngine, MarkerConfig  # noqa: E402
from spatial_llava_ros.scene.generate import generate_scene  # noqa: E402
from spatial_llava_ros.scene.trajectory import render_trajectory  # noqa: E402


def _range(text: str) -> range:
    a, b = text.split(':')
    return range(int(a), int(b))


def match_objects(instance_mask: np.ndarray, marks, min_px: int) -> dict[int, tuple]:
    """GT instance id -> (best IoU, mark or None, GT pixel count), objects >= min_px only."""
    ids, counts = np.unique(instance_mask, return_counts=True)
    out = {}
    for iid, cnt in zip(ids.tolist(), counts.tolist()):
        if iid == 0 or cnt < min_px:
            continue
        gt = instance_mask == iid
        best, best_mark = 0.0, None
        for m in marks:
            x0, y0, x1, y1 = m.box
            inter = int(np.logical_and(gt[y0:y1, x0:x1], m.mask[y0:y1, x0:x1]).sum())
            if inter == 0:
                continue
            iou = inter / float(cnt + m.pixel_count - inter)
            if iou > best:
                best, best_mark = iou, m
        out[iid] = (best, best_mark, cnt)
    return out


def eval_scenes(seeds: range, min_px: int, modes: list[str],
                camera_pitch: float | None = None) -> dict:
    per_cat = {m: defaultdict(lambda: [0, 0]) for m in modes}
    times = {m: [] for m in modes}
    n_marks = {m: [] for m in modes}
    on_background = {m: 0 for m in modes}  # marks whose pixels are mostly floor / wall
    centroid_err = []
    centroid_none = 0
    for seed in seeds:
        scene = generate_scene(seed, camera_pitch=camera_pitch)
        f = scene.frame
        cats = {o.instance_id: o.category for o in scene.objects}
        for mode in modes:
            engine = MarkEngine(MarkerConfig(proposals=mode))
            depth = f.depth if mode == 'depth' else None
            k = f.intrinsics if mode == 'depth' else None
            t0 = time.perf_counter()
            mf = engine.process(f.rgb, depth, k, stamp_ns=f.stamp_ns)
            times[mode].append(time.perf_counter() - t0)
            n_marks[mode].append(len(mf.marks))
            on_background[mode] += sum(
                int((f.instance_mask[m.mask] == 0).mean() > 0.5) for m in mf.marks)
            for iid, (iou, mark, _) in match_objects(f.instance_mask, mf.marks, min_px).items():
                cell = per_cat[mode][cats.get(iid, '?')]
                cell[1] += 1
                if iou >= 0.5:
                    cell[0] += 1
                    if mode == 'depth':
                        truth = masked_centroid(f.instance_mask == iid, f.depth, f.intrinsics,
                                                trim=0.0)
                        if mark.centroid is None or truth is None:
                            centroid_none += 1
                        else:
                            centroid_err.append(float(np.linalg.norm(mark.centroid - truth)))
    result = {}
    for mode in modes:
        cats = {c: {'found': v[0], 'objects': v[1], 'recall': v[0] / v[1] if v[1] else None}
                for c, v in sorted(per_cat[mode].items())}
        found = sum(v['found'] for v in cats.values())
        total = sum(v['objects'] for v in cats.values())
        t = np.array(times[mode]) * 1000
        result[mode] = {'recall': found / total if total else None, 'found': found,
                        'objects': total, 'per_category': cats,
                        'marks_per_frame_mean': float(np.mean(n_marks[mode])),
                        'marks_mostly_background': on_background[mode],
                        'marks_total': int(np.sum(n_marks[mode])),
                        'ms_per_frame_p50': float(np.percentile(t, 50)),
                        'ms_per_frame_p90': float(np.percentile(t, 90))}
    err = np.array(centroid_err)
    result['centroid'] = {'n': int(err.size), 'no_depth': centroid_none,
                          'median_m': float(np.median(err)) if err.size else None,
                          'p90_m': float(np.percentile(err, 90)) if err.size else None,
                          'max_m': float(err.max()) if err.size else None}
    return result


def eval_tracking(seeds: range, n_frames: int, min_px: int) -> dict:
    kept = changed = missed = 0
    per_seq = []
    for seed in seeds:
        traj = render_trajectory(seed, n_frames)
        engine = MarkEngine(MarkerConfig(proposals='depth'))
        prev: dict[int, int | None] = {}
        k_kept = k_changed = 0
        for f in traj.frames:
            mf = engine.process(f.rgb, f.depth, f.intrinsics, stamp_ns=f.stamp_ns)
            cur = {iid: (mark.mark_id if iou >= 0.5 else None)
                   for iid, (iou, mark, _) in match_objects(f.instance_mask, mf.marks,
                                                            min_px).items()}
            for iid, mid in cur.items():
                if iid not in prev:
                    continue
                if mid is None or prev[iid] is None:
                    missed += 1
                elif mid == prev[iid]:
                    kept += 1
                    k_kept += 1
                else:
                    changed += 1
                    k_changed += 1
            prev = cur
        per_seq.append({'seed': seed, 'kept': k_kept, 'changed': k_changed})
    pairs = kept + changed
    return {'frames_per_sequence': n_frames, 'sequences': len(per_seq),
            'pairs_marked_both': pairs, 'kept': kept, 'changed': changed,
            'pairs_missed_in_one': missed,
            'stability': kept / pairs if pairs else None,
            'stability_counting_misses_as_changes': kept / (pairs + missed)
            if pairs + missed else None,
            'per_sequence': per_seq}


def markdown(res: dict) -> str:
    modes = [m for m in ('depth', 'color') if m in res['scenes']]
    cats = sorted({c for m in modes for c in res['scenes'][m]['per_category']})
    lines = ['| category | objects | ' + ' | '.join(f'{m} recall' for m in modes) + ' |',
             '|---|---:|' + '---:|' * len(modes)]
    for c in cats:
        row = res['scenes'][modes[0]]['per_category'].get(c, {'objects': 0})
        vals = []
        for m in modes:
            v = res['scenes'][m]['per_category'].get(c)
            vals.append(f'{v["recall"]:.3f}' if v and v['recall'] is not None else '-')
        lines.append(f'| {c} | {row["objects"]} | ' + ' | '.join(vals) + ' |')
    tot = [f'**{res["scenes"][m]["recall"]:.3f}**' for m in modes]
    lines.append(f'| **all** | {res["scenes"][modes[0]]["objects"]} | ' + ' | '.join(tot) + ' |')
    lines.append('')
    for m in modes:
        r = res['scenes'][m]
        lines.append(f'{m}: {r["marks_per_frame_mean"]:.1f} marks per frame; '
                     f'{r["marks_mostly_background"]} of {r["marks_total"]} marks lie mostly on '
                     f'floor or wall; p50 {r["ms_per_frame_p50"]:.1f} ms per frame (wall clock '
                     f'in this run, shared machine).')
    c = res['scenes']['centroid']
    pitch = res.get('camera_pitch')
    lines += [f'Scenes: seeds {res["seeds"]}, objects >= {res["min_px"]} px, '
              f'match at IoU >= 0.5'
              + ('.' if pitch is None else f', camera pitched {pitch:.2f} rad down.'),
              f'3D centroid error (depth mode, {c["n"]} found objects): median '
              f'{100 * c["median_m"]:.2f} cm, p90 {100 * c["p90_m"]:.2f} cm.']
    tr = res.get('tracking')
    if tr:
        lines.append(f'Id stability ({tr["sequences"]} trajectories x '
                     f'{tr["frames_per_sequence"]} frames):'
                     f' {tr["kept"]}/{tr["pairs_marked_both"]} = {tr["stability"]:.4f} of '
                     f'consecutive pairs keep the id (counting frames where the object was '
                     f'missed as changes: {tr["stability_counting_misses_as_changes"]:.4f}).')
    fast = res.get('tracking_fast')
    if fast:
        lines.append(f'Fast camera (same sway in {fast["frames_per_sequence"]} frames, 3x the '
                     f'motion per frame): {fast["kept"]}/{fast["pairs_marked_both"]} = '
                     f'{fast["stability"]:.4f} (with misses: '
                     f'{fast["stability_counting_misses_as_changes"]:.4f}).')
    return '\n'.join(lines) + '\n'


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--seeds', default='100000:100200')
    ap.add_argument('--trajectories', default='100000:100010')
    ap.add_argument('--frames', type=int, default=30)
    ap.add_argument('--fast-frames', type=int, default=10,
                    help='a second, faster pass: the same sway in this many frames (0: skip)')
    ap.add_argument('--min-px', type=int, default=400)
    ap.add_argument('--modes', default='depth,color')
    ap.add_argument('--out', default='bench/results/marks_eval.json')
    ap.add_argument('--md', default='bench/results/marks_eval.md')
    ap.add_argument('--camera-pitch', type=float, default=None,
                    help='radians down for every scene (0: the camera looks straight ahead); '
                         "default: the generator's 0.30-0.45")
    ap.add_argument('--no-tracking', action='store_true', help='scenes only')
    args = ap.parse_args()
    try:
        import torch
        torch.set_num_threads(1)
    except ImportError:
        pass
    import cv2
    cv2.setNumThreads(1)
    t0 = time.time()
    res = {'seeds': args.seeds, 'min_px': args.min_px, 'camera_pitch': args.camera_pitch,
           'machine': {'python': platform.python_version(), 'cpu_count': os.cpu_count(),
                       'load_avg_at_start': os.getloadavg()},
           'scenes': eval_scenes(_range(args.seeds), args.min_px, args.modes.split(','),
                                 args.camera_pitch)}
    if not args.no_tracking:
        res['tracking'] = eval_tracking(_range(args.trajectories), args.frames, args.min_px)
    if args.fast_frames and not args.no_tracking:
        res['tracking_fast'] = eval_tracking(_range(args.trajectories), args.fast_frames,
                                             args.min_px)
    res['wall_s'] = round(time.time() - t0, 1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2))
    Path(args.md).write_text(markdown(res))
    print(markdown(res))
    return 0


if __name__ == '__main__':
    sys.exit(main())
