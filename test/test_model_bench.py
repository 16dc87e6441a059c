"""The resolver benchmark script runs (tiny model, CPU) and builds the real 7B shape."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / 'bench' / 'bench_resolver.py'


@pytest.fixture(scope='module')
def bench():
    spec = importlib.util.spec_from_file_location('bench_resolver', BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _args(**kw) -> argparse.Namespace:
    base = dict(model='tiny', device='cpu', dtype=None, preprocess=None, prompt_tokens=0,
                new_tokens=4, batch=3, iters=1, warmup=0, threads=1, height=24, width=40,
                out=None, dry_run=False, layers=None)
    return argparse.Namespace(**(base | kw))


def test_7b_architecture_on_meta_device(bench):
    info = bench.run(_args(model='7b', dtype='bf16', dry_run=True, prompt_tokens=644))['info']
    assert info['params'] == 7_063_427_072  # llava-hf/llava-1.5-7b-hf
    assert info['image_tokens'] == 576
    assert info['prompt_tokens'] >= 644
    assert info['answer_tokens'][37] == 3  # '3' '7' eos


def test_tiny_run_reports_every_figure(bench):
    report = bench.run(_args())
    res = report['results']
    for key in ('a_generate', 'b_score_new_frame', 'c_followup_cached', 'plain_forward'):
        assert res[key]['p50_ms'] > 0 and res[key]['n'] >= 1
    assert res['ratios_to_a_p50']['b_score_new_frame'] == pytest.approx(
        res['b_score_new_frame']['p50_ms'] / res['a_generate']['p50_ms'], rel=1e-3
    )
    assert 'peak_cpu_rss_mib' in res['memory']
    table = bench.markdown(report)
    assert '| (c) follow-up, cached frame |' in table and 'ratio to (a)' in table


def test_layers_smoke_option_is_marked_as_not_the_real_figures(bench):
    report = bench.run(_args(model='tiny-random', layers=1))
    assert report['info']['layers_override'] == 1
    full = bench.run(_args(model='tiny-random'))['info']['params']
    assert report['info']['params'] < full  # the towers really were cut
    assert bench.markdown(report).startswith('SMOKE RUN: both towers cut to 1 layer(s)')
    with pytest.raises(SystemExit, match='random models'):
        bench.run(_args(model='tiny', layers=1))
