"""Per-family resolver latency on the tiny checkpoints: image tokens of a 640x480 frame,
a new frame's score and a follow-up query, as ratios to that family's own generate path.

For each family (LLaVA-1.5, LLaVA-NeXT, Qwen2-VL, Qwen2.5-VL, Idefics3), in one run, on one
device, with the same frame, marks and query:
  (a) the family's own generate path: processor + ``model.generate`` with 16 new tokens
      (greedy, ``min_new_tokens`` 16) on the scoring prompt;
  (b) ``Resolver.score`` on a new frame (processor, vision tower, one forward over the prefix
      and every mark's answer, KV snapshot);
  (c) a follow-up query on the cached frame (``Resolver.score_frame``).
For the newer families (b) is also timed the other way (one pass under a 4D mask, or a
causal prefix pass then the tree). Times are CPU time of the process (one torch thread), so
other jobs on a shared machine do not inflate them. Ratios are to (a) of the same family.
The tiny checkpoints keep each family's real image geometry, so the image-token counts are
those of the real models; the times are those of tiny widths (32 hidden, 2 layers) and say
nothing about a 7B model's speed.

  OMP_NUM_THREADS=1 nice -n 19 .venv/bin/python bench/bench_families.py \
      --out bench/results/families_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_resolver import summary  # noqa: E402

from spatial_llava_ros.model.families import FAMILIES  # noqa: E402
from spatial_llava_ros.model.loading import load_model  # noqa: E402
from spatial_llava_ros.model.resolver import Resolver  # noqa: E402
from spatial_llava_ros.model.tiny_families import make_family_model  # noqa: E402

MARKS = [1, 2, 3, 4, 5, 6, 7, 8, 12, 37]
QUERIES = ['the chair left of the table', 'the red mug', 'the lamp nearest to the sofa']


def timed(fn, iters: int, warmup: int, setup=None) -> list[float]:
    """CPU ms per call (process time: with one torch thread this is the work itself, and
    the shared machine's other jobs do not count), ``setup`` (not timed) before each call."""
    out = []
    for i in range(warmup + iters):
        if setup is not None:
            setup(i)
        t0 = time.process_time()
        fn(i)
        if i >= warmup:
            out.append((time.process_time() - t0) * 1e3)
    return out


def generate_fn(resolver, frames, new_tokens: int):
    """The family's own answer path on the scoring prompt, preprocessing included."""
    chat = getattr(resolver, 'chat', None)
    tok = resolver.tokenizer

    def run(i):
        image = frames[i % len(frames)]
        if chat is None:  # LLaVA-1.5: prompt.yaml's vicuna text, padded-square CLIP input
            text = resolver.template.frame_text(MARKS)
            ids = resolver.prefix_ids(text) + resolver.query_ids(
                (resolver._ids(text), text), QUERIES[0])
            ids = torch.tensor([ids])
            inputs = {'input_ids': ids, 'attention_mask': torch.ones_like(ids),
                      'pixel_values': resolver.pixel_values(image)}
        else:
            ids, mm = resolver.frame_inputs(
                image, chat.frame_text(MARKS) + chat.query_text(QUERIES[0]))
            ids = torch.tensor([ids])
            inputs = {'input_ids': ids, 'attention_mask': torch.ones_like(ids), **mm}
        with torch.inference_mode():
            out = resolver.model.generate(**inputs, max_new_tokens=new_tokens,
                                          min_new_tokens=new_tokens, do_sample=False,
                                          pad_token_id=tok.pad_token_id)
        assert out.shape[1] == ids.shape[1] + new_tokens, out.shape
        tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)

    return run


def bench_family(family: str, tmp: Path, args) -> dict:
    path = make_family_model(tmp / family, family, seed=0)
    loaded = load_model(path, device='cpu', dtype='float32')
    resolver = Resolver(loaded)
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (480, 640, 3), dtype=np.uint8) for _ in range(3)]
    it, wu = args.iters, args.warmup
    if family == 'llava':
        image_tokens = resolver.num_image_tokens
        prefix = len(resolver.prefix_ids(resolver.template.frame_text(MARKS)))
    else:
        image_tokens = resolver.image_tokens(frames[0])
        prefix = len(resolver.frame_inputs(frames[0], resolver.chat.frame_text(MARKS))[0])
    res = {
        'family': FAMILIES[family].label,
        'model_type': family,
        'params': sum(p.numel() for p in loaded.model.parameters()),
        'image_tokens_640x480': image_tokens,
        'prefix_tokens': prefix,
        'answer_tokens_mark_12': len(resolver.answer_ids(12)),
    }
    res['a_generate'] = summary(timed(generate_fn(resolver, frames, args.new_tokens),
                                      max(3, it // 2), min(wu, 1)))
    res['b_score_new_frame'] = summary(timed(
        lambda i: resolver.score(frames[i % len(frames)], MARKS, QUERIES[i % len(QUERIES)]),
        it, wu, setup=lambda i: resolver.forget_frames()))
    if hasattr(resolver, 'one_pass'):  # the other way to score a new frame, same run
        resolver.one_pass = not resolver.one_pass
        key = 'b_one_pass' if resolver.one_pass else 'b_two_pass'
        res[key] = summary(timed(
            lambda i: resolver.score(frames[i % len(frames)], MARKS, QUERIES[i % len(QUERIES)]),
            it, wu, setup=lambda i: resolver.forget_frames()))
        resolver.one_pass = not resolver.one_pass
        res['default_new_frame'] = 'one_pass' if resolver.one_pass else 'two_pass'
        res[f'ratio_{key}_to_a'] = round(res[key]['p50_ms'] / res['a_generate']['p50_ms'], 4)
    resolver.forget_frames()
    frame = resolver.encode_frame(frames[0], MARKS)
    res['c_followup_cached'] = summary(timed(
        lambda i: resolver.score_frame(frame, [QUERIES[i % len(QUERIES)]]), it, wu))
    a = res['a_generate']['p50_ms']
    res['ratio_b_to_a'] = round(res['b_score_new_frame']['p50_ms'] / a, 4)
    res['ratio_c_to_a'] = round(res['c_followup_cached']['p50_ms'] / a, 4)
    return res


def markdown(report: dict) -> str:
    info = report['info']
    lines = [
        f"# Resolver per family, tiny checkpoints, CPU time ({info['threads']} thread)",
        '',
        f"`{info['command']}`; torch {info['torch']}, transformers {info['transformers']}, "
        f"{info['iters']} iterations after {info['warmup']} warm-up, 640x480 frame, "
        f"{len(MARKS)} marks (two of them two-digit), load average at start "
        f"{info['load_average_at_start']}.",
        '',
        '| family | image tokens (640x480) | prefix tokens | (a) generate 16 tokens p50 ms '
        '| (b) new frame p50 ms | (c) follow-up p50 ms | (b)/(a) | (c)/(a) '
        '| (b) the other way: p50 ms, /(a) |',
        '|---|---:|---:|---:|---:|---:|---:|---:|---|',
    ]
    for r in report['families']:
        other = next((k for k in ('b_one_pass', 'b_two_pass') if k in r), None)
        alt = (f"{other[2:].replace('_', ' ')}: {r[other]['p50_ms']:.1f}, "
               f"{r[f'ratio_{other}_to_a']:.3f}" if other else 'one pass only')
        lines.append(
            f"| {r['family']} | {r['image_tokens_640x480']} | {r['prefix_tokens']} | "
            f"{r['a_generate']['p50_ms']:.1f} | {r['b_score_new_frame']['p50_ms']:.1f} | "
            f"{r['c_followup_cached']['p50_ms']:.2f} | {r['ratio_b_to_a']:.3f} | "
            f"{r['ratio_c_to_a']:.4f} | {alt} |")
    return '\n'.join(lines) + '\n'


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--families', default=','.join(FAMILIES))
    ap.add_argument('--iters', type=int, default=10)
    ap.add_argument('--warmup', type=int, default=2)
    ap.add_argument('--new-tokens', type=int, default=16)
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--out', default=None, help='JSON path (a .md beside it)')
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    names = [f for f in args.families.split(',') if f]
    unknown = sorted(set(names) - set(FAMILIES))
    if unknown:
        raise SystemExit(f'unknown families {unknown}; known {list(FAMILIES)}')
    info = {'threads': torch.get_num_threads(), 'torch': torch.__version__,
            'transformers': __import__('transformers').__version__,
            'python': platform.python_version(), 'iters': args.iters, 'warmup': args.warmup,
            'new_tokens': args.new_tokens, 'marks': MARKS,
            'command': ' '.join([Path(sys.executable).name] + sys.argv),
            'load_average_at_start': [round(x, 2) for x in os.getloadavg()]}
    with tempfile.TemporaryDirectory() as tmp:
        report = {'info': info, 'families': []}
        for fam in names:
            report['families'].append(bench_family(fam, Path(tmp), args))
            print(json.dumps(report['families'][-1]), flush=True)
    md = markdown(report)
    print(md)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + '\n', encoding='utf-8')
        out.with_suffix('.md').write_text(md, encoding='utf-8')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
