"""Resolver latency: LLaVA's generate path vs one-pass mark scoring vs a cached follow-up.

Measures, in one run and on one device:
  (a) baseline: the original LLaVA answer path, ``model.generate`` with 16 new tokens
      (greedy, preprocessing included), on the same prompt;
  (b) ``Resolver.score`` on a new frame: one forward pass over image + prompt + every
      mark's answer (preprocessing, vision tower, tokenization and the KV snapshot included);
  (c) a follow-up query on a cached frame (``Resolver.score_frame``), and the same through
      ``Resolver.score`` (which first recognises the frame by its pixels);
  a plain single forward of the prompt (reference), batched throughput (B queries on one
  cached frame, and B queries with a new frame) and peak memory. Ratios are to (a).

Models: ``--model 7b`` builds the LLaVA-1.5-7B architecture (CLIP ViT-L/14-336 + Vicuna-7B,
576 image tokens) with random weights in bf16 directly on the GPU (no download; speed
does not depend on the values); ``--model tiny`` writes and loads a tiny random checkpoint
(runs anywhere); any other value is a local checkpoint directory. Examples:

  .venv/bin/python bench/bench_resolver.py --model tiny --device cpu \
      --out bench/results/resolver_cpu.json
  python bench/bench_resolver.py --model 7b --device cuda --out bench/results/resolver_h100.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from spatial_llava_ros.model.loading import LoadedModel, load_model, pick_dtype  # noqa: E402
from spatial_llava_ros.model.prompt import PromptTemplate  # noqa: E402
from spatial_llava_ros.model.resolver import Resolver  # noqa: E402
from spatial_llava_ros.model.tiny import (  # noqa: E402
    build_processor,
    build_tokenizer,
    llava15_7b_config,
    make_tiny_model,
    tiny_config,
)

MARKS = [1, 2, 3, 4, 5, 6, 7, 8, 12, 37]  # ten marks, two of them two-digit
OBJECTS = ['chair', 'table', 'lamp', 'sofa', 'plant', 'mug', 'shelf', 'door', 'bed', 'desk']
FILLER = 'near the wooden table and the lamp by the window'.split()


def build_random(
    device: torch.device,
    dtype: torch.dtype,
    meta: bool = False,
    size: str = '7b',
    layers: int | None = None,
) -> LoadedModel:
    """Random weights initialised directly on ``device`` in ``dtype`` (no fp32 copy).

    ``size='7b'``: the LLaVA-1.5-7B architecture (the GPU benchmark). ``size='tiny'``: the
    same code path with the tiny config, so it can be checked on a CPU. ``layers``: cut both
    towers to that many layers, widths kept (a smoke run of the 7B shapes on a CPU before
    spending GPU time; its timings are not the 7B's).
    """
    from transformers import LlavaForConditionalGeneration

    texts = [PromptTemplate.load().all_text(), ' '.join(OBJECTS + FILLER)]
    if size == '7b':
        config = llava15_7b_config()
        tokenizer = build_tokenizer(texts=texts, image_token_id=config.image_token_id)
        processor = build_processor(tokenizer, image_size=336, patch_size=14)
    else:
        tokenizer = build_tokenizer(texts=texts)
        config = tiny_config(len(tokenizer), tokenizer.convert_tokens_to_ids('<image>'))
        processor = build_processor(tokenizer, image_size=32, patch_size=8)
    config._attn_implementation = 'sdpa'
    if layers is not None:
        config.text_config.num_hidden_layers = layers
        # features come from layer -2 (vision_feature_layer): keep at least two
        config.vision_config.num_hidden_layers = max(layers, 2)
    target = torch.device('meta') if meta else device
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with target:
            model = LlavaForConditionalGeneration(config)
    finally:
        torch.set_default_dtype(previous)
    model.eval()  # (no .to(dtype): it would also round the fp32 RoPE inv_freq buffer)
    wrong = {p.dtype for p in model.parameters()} - {dtype}
    if wrong:
        raise RuntimeError(f'parameters in {wrong}, expected {dtype}')
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return LoadedModel(model, processor, tokenizer, device, dtype, Path(f'random-llava-{size}'))


def make_query(resolver: Resolver, target_tokens: int, obj: str) -> tuple[str, int]:
    """A query padded with filler words until frame prefix + query = ``target_tokens``."""
    frame_text = resolver.template.frame_text(MARKS)
    ctx = (resolver._ids(frame_text), frame_text)
    prefix = len(resolver.prefix_ids(frame_text))
    words = ['the', obj, 'left', 'of', 'the', 'table']
    i = 0
    while prefix + len(resolver.query_ids(ctx, ' '.join(words))) < target_tokens:
        words.append(FILLER[i % len(FILLER)])
        i += 1
    query = ' '.join(words)
    return query, prefix + len(resolver.query_ids(ctx, query))


def timed(fn, iters: int, warmup: int, sync, setup=None) -> list[float]:
    """Wall-clock ms per call, ``setup`` (not timed) before each call."""
    out = []
    for i in range(warmup + iters):
        if setup is not None:
            setup(i)
        sync()
        t0 = time.perf_counter()
        fn(i)
        sync()
        if i >= warmup:
            out.append((time.perf_counter() - t0) * 1e3)
    return out


def summary(ms: list[float]) -> dict:
    qs = np.percentile(ms, [50, 95])
    return {
        'p50_ms': round(float(qs[0]), 3),
        'p95_ms': round(float(qs[1]), 3),
        'mean_ms': round(statistics.fmean(ms), 3),
        'n': len(ms),
    }


def peak_memory(device: torch.device) -> dict:
    if device.type == 'cuda':
        return {
            'peak_gpu_allocated_mib': round(torch.cuda.max_memory_allocated(device) / 2**20, 1),
            'peak_gpu_reserved_mib': round(torch.cuda.max_memory_reserved(device) / 2**20, 1),
        }
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # Linux: KiB
    return {'peak_cpu_rss_mib': round(rss_kib / 1024, 1)}


def run(args: argparse.Namespace) -> dict:
    device = torch.device(args.device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    if device.type == 'cpu':
        torch.set_num_threads(args.threads)
    dtype = pick_dtype(args.dtype, device)
    tmp = tempfile.TemporaryDirectory()
    if args.model in ('7b', 'tiny-random'):
        loaded = build_random(device, dtype, meta=args.dry_run, size=args.model.split('-')[0],
                              layers=args.layers)
    elif args.layers is not None:
        raise SystemExit('--layers applies to the random models (7b, tiny-random) only')
    elif args.model == 'tiny':
        loaded = load_model(make_tiny_model(Path(tmp.name) / 'tiny'), device=device, dtype=dtype)
    else:
        loaded = load_model(args.model, device=device, dtype=dtype)
    preprocess = args.preprocess or ('torch' if device.type == 'cuda' else 'processor')
    resolver = Resolver(loaded, preprocess=preprocess)
    queries = []
    for obj in OBJECTS:
        q, n_tokens = make_query(resolver, args.prompt_tokens, obj)
        queries.append(q)
    n_params = sum(p.numel() for p in loaded.model.parameters())
    info = {
        'model': args.model,
        'layers_override': args.layers,
        'params': n_params,
        'device': torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu',
        'cpu': platform.processor() or platform.machine(),
        'threads': torch.get_num_threads(),
        'dtype': str(dtype).replace('torch.', ''),
        'attn_implementation': loaded.model.config._attn_implementation,
        'preprocess': preprocess,
        'torch': torch.__version__,
        'transformers': __import__('transformers').__version__,
        'python': platform.python_version(),
        'image_tokens': resolver.num_image_tokens,
        'prompt_tokens': n_tokens,
        'marks': MARKS,
        'answer_tokens': {m: len(resolver.answer_ids(m)) for m in MARKS},
        'new_tokens_baseline': args.new_tokens,
        'batch': args.batch,
        'iters': args.iters,
        'warmup': args.warmup,
        'frame_size': [args.height, args.width],
        'command': ' '.join([Path(sys.executable).name] + sys.argv),
        'load_average_at_start': [round(x, 2) for x in os.getloadavg()],
    }
    if args.dry_run:
        return {'info': info, 'dry_run': True}

    sync = torch.cuda.synchronize if device.type == 'cuda' else (lambda: None)
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (args.height, args.width, 3), dtype=np.uint8) for _ in range(4)]
    image = frames[0]
    model, it, wu = loaded.model, args.iters, args.warmup
    results: dict = {}
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)

    frame_text = resolver.template.frame_text(MARKS)
    prompt_ids = resolver.prefix_ids(frame_text) + resolver.query_ids(
        (resolver._ids(frame_text), frame_text), queries[0]
    )

    def generate(i):
        pv = resolver.pixel_values(frames[i % len(frames)]).to(device, dtype)
        ids = torch.tensor([prompt_ids], device=device)
        with torch.inference_mode():
            out = model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                pixel_values=pv,
                max_new_tokens=args.new_tokens,
                min_new_tokens=args.new_tokens,
                do_sample=False,
                pad_token_id=loaded.tokenizer.pad_token_id,
            )
        assert out.shape[1] == len(prompt_ids) + args.new_tokens, out.shape
        loaded.tokenizer.decode(out[0, len(prompt_ids) :], skip_special_tokens=True)

    results['a_generate'] = summary(timed(generate, max(3, it // 2), min(wu, 2), sync))

    def plain_forward(i):
        pv = resolver.pixel_values(frames[i % len(frames)]).to(device, dtype)
        with torch.inference_mode():
            model(input_ids=torch.tensor([prompt_ids], device=device), pixel_values=pv,
                  logits_to_keep=1)

    results['plain_forward'] = summary(timed(plain_forward, it, wu, sync))
    results['preprocess_frame'] = summary(
        timed(lambda i: resolver.pixel_values(frames[i % len(frames)]), it, wu, sync)
    )

    results['b_score_new_frame'] = summary(
        timed(
            lambda i: resolver.score(frames[i % len(frames)], MARKS, queries[i % len(queries)]),
            it,
            wu,
            sync,
            setup=lambda i: resolver.forget_frames(),
        )
    )

    results['encode_frame'] = summary(
        timed(
            lambda i: resolver.encode_frame(frames[i % len(frames)], MARKS),
            it,
            wu,
            sync,
            setup=lambda i: resolver.forget_frames(),
        )
    )
    resolver.forget_frames()
    frame = resolver.encode_frame(image, MARKS)
    results['c_followup_cached'] = summary(
        timed(lambda i: resolver.score_frame(frame, [queries[i % len(queries)]]), it, wu, sync)
    )
    results['c_followup_via_score'] = summary(
        timed(lambda i: resolver.score(image, MARKS, queries[i % len(queries)]), it, wu, sync)
    )

    batch = (queries * (args.batch // len(queries) + 1))[: args.batch]
    cached_b = summary(timed(lambda i: resolver.score_frame(frame, batch), it, wu, sync))
    new_b = summary(
        timed(
            lambda i: resolver.score_batch(frames[i % len(frames)], MARKS, batch),
            it,
            wu,
            sync,
            setup=lambda i: resolver.forget_frames(),
        )
    )
    results['batch_cached_frame'] = cached_b | {
        'queries_per_s': round(args.batch * 1e3 / cached_b['p50_ms'], 1)
    }
    results['batch_new_frame'] = new_b | {
        'queries_per_s': round(args.batch * 1e3 / new_b['p50_ms'], 1)
    }
    results['single_cached_queries_per_s'] = round(
        1e3 / results['c_followup_cached']['p50_ms'], 1
    )
    results['memory'] = peak_memory(device)
    frame_mib = frame.nbytes() / 2**20
    results['frame_kv_cache_mib'] = round(frame_mib, 2)

    base = results['a_generate']['p50_ms']
    results['ratios_to_a_p50'] = {
        k: round(results[k]['p50_ms'] / base, 4)
        for k in (
            'plain_forward',
            'preprocess_frame',
            'b_score_new_frame',
            'encode_frame',
            'c_followup_cached',
            'c_followup_via_score',
        )
    }
    return {'info': info, 'results': results}


def markdown(report: dict) -> str:
    info, res = report['info'], report['results']
    ratios = res['ratios_to_a_p50']
    rows = [
        ('(a) generate, 16 new tokens (baseline)', res['a_generate'], 1.0),
        ('plain single forward (reference)', res['plain_forward'], ratios['plain_forward']),
        (
            f"image preprocessing ({info['preprocess']}), part of (b)",
            res['preprocess_frame'],
            ratios['preprocess_frame'],
        ),
        ('(b) score, new frame (one pass)', res['b_score_new_frame'], ratios['b_score_new_frame']),
        ('encode_frame (prefix KV only)', res['encode_frame'], ratios['encode_frame']),
        ('(c) follow-up, cached frame', res['c_followup_cached'], ratios['c_followup_cached']),
        (
            '(c) follow-up via score() (frame lookup)',
            res['c_followup_via_score'],
            ratios['c_followup_via_score'],
        ),
    ]
    mem = ', '.join(f'{k} {v}' for k, v in res['memory'].items())
    smoke = info.get('layers_override')
    lines = [
        *([f'SMOKE RUN: both towers cut to {smoke} layer(s), widths kept; these timings are '
           'NOT the 7B figures.', ''] if smoke is not None else []),
        f"Device: {info['device']} ({info['threads']} threads), model {info['model']} "
        f"({info['params'] / 1e6:.1f} M params, {info['dtype']}, {info['attn_implementation']}), "
        f"prompt {info['prompt_tokens']} tokens ({info['image_tokens']} image), "
        f"{len(info['marks'])} marks, preprocess {info['preprocess']}, "
        f"torch {info['torch']}, transformers {info['transformers']}.",
        '',
        '| path | p50 ms | p95 ms | ratio to (a), p50 |',
        '|---|---:|---:|---:|',
    ]
    for name, s, r in rows:
        lines.append(f"| {name} | {s['p50_ms']:.2f} | {s['p95_ms']:.2f} | {r:.4f} |")
    b, nb = res['batch_cached_frame'], res['batch_new_frame']
    lines += [
        '',
        f"Batched, {info['batch']} queries: cached frame {b['p50_ms']:.2f} ms p50 "
        f"({b['queries_per_s']} queries/s, vs {res['single_cached_queries_per_s']} one at a "
        f"time); new frame {nb['p50_ms']:.2f} ms p50 ({nb['queries_per_s']} queries/s).",
        f"Peak memory: {mem}; one frame's KV cache {res['frame_kv_cache_mib']} MiB. "
        f"Load average at start: {info['load_average_at_start']}.",
        f"Command: `{info['command']}`",
    ]
    return '\n'.join(lines) + '\n'


def compare(report: dict, base: dict) -> dict:
    """Ratios between this model and the baseline, all from the same run."""
    r, b = report['results'], base['results']
    return {
        'b_new_vs_baseline_b': round(r['b_score_new_frame']['p50_ms']
                                     / b['b_score_new_frame']['p50_ms'], 3),
        'c_new_vs_own_b': round(r['c_followup_cached']['p50_ms']
                                / r['b_score_new_frame']['p50_ms'], 4),
        'a_new_vs_baseline_a': round(r['a_generate']['p50_ms'] / b['a_generate']['p50_ms'], 3),
    }


def compare_markdown(report: dict) -> str:
    base, c = report['baseline'], report['comparison']
    rows = [('model', report['info']['model'], base['info']['model'])]
    for key, name in (('a_generate', '(a) generate p50 ms'),
                      ('b_score_new_frame', '(b) new-frame score p50 ms'),
                      ('c_followup_cached', '(c) follow-up p50 ms')):
        rows.append((name, report['results'][key]['p50_ms'], base['results'][key]['p50_ms']))
    rows.append(('image tokens', report['info']['image_tokens'], base['info']['image_tokens']))
    rows.append(('parameters', report['info']['params'], base['info']['params']))
    lines = ['', '## Against the baseline (same run)', '', '| | this model | baseline |',
             '|---|---:|---:|'] + [f'| {a} | {x} | {y} |' for a, x, y in rows]
    lines += ['', f"(b) this / baseline: **{c['b_new_vs_baseline_b']}**; "
              f"(c) / own (b): **{c['c_new_vs_own_b']}**; "
              f"(a) this / baseline: {c['a_new_vs_baseline_a']}", '']
    return '\n'.join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        '--model',
        default='tiny',
        help="'7b' (random LLaVA-1.5-7B), 'tiny' (tiny checkpoint through load_model), "
        "'tiny-random' (the 7b code path with the tiny config) or a checkpoint directory",
    )
    p.add_argument('--device', default=None, help='cpu / cuda (default: cuda when present)')
    p.add_argument('--dtype', default=None, help='default: bf16 on CUDA, fp32 on CPU')
    p.add_argument('--preprocess', choices=['processor', 'torch'], default=None,
                   help='image preprocessing (default: torch on CUDA, processor on CPU)')
    p.add_argument('--prompt-tokens', type=int, default=644, help='pad the query up to this')
    p.add_argument('--new-tokens', type=int, default=16)
    p.add_argument('--batch', type=int, default=8)
    p.add_argument('--iters', type=int, default=30)
    p.add_argument('--warmup', type=int, default=5)
    p.add_argument('--threads', type=int, default=1, help='CPU threads')
    p.add_argument('--height', type=int, default=480)
    p.add_argument('--width', type=int, default=640)
    p.add_argument('--out', default=None, help='JSON output; a .md table is written beside it')
    p.add_argument('--layers', type=int, default=None,
                   help='random models only: cut both towers to N layers (CPU smoke run of '
                   'the 7B shapes; not the 7B speed)')
    p.add_argument('--baseline', default=None,
                   help='a second checkpoint directory timed in the same run (e.g. the previous '
                   'shipped model); the report gains its results and the ratios between them')
    p.add_argument('--dry-run', action='store_true',
                   help='build config/tokenizer/prompt only (7b on the meta device), no timing')
    args = p.parse_args()
    report = run(args)
    if args.baseline and not args.dry_run:
        base = run(argparse.Namespace(**{**vars(args), 'model': args.baseline}))
        report['baseline'] = base
        report['comparison'] = compare(report, base)
    text = json.dumps(report, indent=2)
    print(text)
    if not args.dry_run:
        md = markdown(report)
        if 'comparison' in report:
            md += compare_markdown(report)
        print(md)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + '\n')
        if not args.dry_run:
            out.with_suffix('.md').write_text(md)
    return 0


if __name__ == '__main__':
    sys.exit(main())
