"""Top-1 grounding accuracy on held-out synthetic scenes, per relation, vs a random mark.

Each scene seed is rendered, marked by the marks engine (as at run time), and every
referring expression is scored by the resolver over all marks of the frame. A GT target is
tied to the mark with the best IoU; a query whose target got no mark cannot be answered
and counts as a failure (reported as ``unmatched``), so ``accuracy`` is end to end and
``accuracy_matched`` isolates the model. The random baseline is the exact expectation of
picking a mark uniformly (1 / number of marks) on each query.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from spatial_llava_ros.errors import InputError
from spatial_llava_ros.training.synthetic import SomSettings, marked_scene


def evaluate_grounding(resolver, seeds: list[int], settings: SomSettings,
                       progress: bool = False, max_expressions: int = 16) -> dict:
    """Score every expression of every scene; returns the JSON-ready report.

    With ``settings.renumber_votes`` > 1 every frame is also asked under that many
    numberings and the answers are combined (model/votes.py), as the resolver does at run
    time for that model."""
    from spatial_llava_ros.model.votes import check_votes

    if not seeds:
        raise InputError('no seeds to evaluate')
    votes = check_votes(settings.renumber_votes)
    if votes > 1 and settings.mark_style != 'number':
        raise InputError(f'renumber votes redraw the numbers alone; mark_style '
                         f'{settings.mark_style!r} draws more (use 1 vote)')
    per: dict[str, dict] = {}
    t0 = time.time()
    it = seeds
    if progress:
        from tqdm import tqdm

        it = tqdm(seeds, desc='eval grounding', unit='scene')
    scenes_without_marks = 0
    failures: dict[str, int] = {}  # a served model's failed queries, by code: count as wrong
    for seed in it:
        ms = marked_scene(seed, settings, max_expressions=max_expressions, keep=votes > 1)
        for _text, rel in ms.unmatched:
            e = per.setdefault(rel, _empty())
            e['n'] += 1
            e['unmatched'] += 1
        if not ms.mark_ids:
            scenes_without_marks += 1
            continue
        if not ms.queries:
            continue
        texts = [q for q, _, _ in ms.queries]
        if votes > 1:
            results = _score_votes(resolver, ms, settings, texts, votes, failures)
        else:
            results = _score(resolver, ms.image, ms.mark_ids, texts, failures)
        chance = 1.0 / len(ms.mark_ids)
        for (_q, mark, rel), res in zip(ms.queries, results):
            e = per.setdefault(rel, _empty())
            e['n'] += 1
            e['matched'] += 1
            e['correct'] += int(res is not None and res.best_id == mark)
            e['random'] += chance
        resolver.forget_frames()
    total = _empty()
    for e in per.values():
        for k in total:
            total[k] += e[k]
    if total['n'] == 0:
        raise InputError(f'{len(seeds)} scenes gave 0 queries')
    report = {
        'accuracy': total['correct'] / total['n'],
        'accuracy_matched': total['correct'] / max(1, total['matched']),
        'random_baseline': total['random'] / total['n'],
        'n_queries': int(total['n']),
        'n_unmatched': int(total['unmatched']),
        'match_rate': total['matched'] / total['n'],
        'n_scenes': len(seeds),
        'scenes_without_marks': scenes_without_marks,
        'seeds': f'{min(seeds)}:{max(seeds) + 1}',
        'renumber_votes': votes,
        'settings': settings.__dict__,
        'wall_s': round(time.time() - t0, 1),
        'per_relation': {rel: _finish(e) for rel, e in sorted(per.items())},
    }
    if failures:
        report['failed_queries'] = dict(sorted(failures.items()))
    return report


def _score(resolver, image, mark_ids, queries, failures: dict[str, int]) -> list:
    """The batch's resolutions; with a served model, a query that fails (a RemoteError with
    its code, e.g. bad_answer) is None and counted in ``failures`` instead of ending the run."""
    from spatial_llava_ros.errors import ResolveError

    try:
        return resolver.score_batch(image, mark_ids, queries)
    except ResolveError as exc:
        if getattr(exc, 'code', None) is None:
            raise
    out = []
    for q in queries:
        try:
            out.append(resolver.score(image, mark_ids, q))
        except ResolveError as exc:
            code = getattr(exc, 'code', None)
            if code is None:
                raise
            failures[code] = failures.get(code, 0) + 1
            out.append(None)
    return out


def _score_votes(resolver, ms, settings: SomSettings, queries, votes: int,
                 failures: dict[str, int]) -> list:
    """``_score`` under ``votes`` numberings of the frame (a failed batch: all None)."""
    from spatial_llava_ros.errors import ResolveError
    from spatial_llava_ros.model.votes import Renumberable, score_with_votes

    frame = Renumberable.from_marked(ms.marked, settings.text_height_336)
    try:
        return score_with_votes(resolver, frame, ms.mark_ids, queries, votes)
    except ResolveError as exc:
        code = getattr(exc, 'code', None)
        if code is None:
            raise
        failures[code] = failures.get(code, 0) + len(queries)
        return [None] * len(queries)


def _empty() -> dict:
    return {'n': 0, 'matched': 0, 'unmatched': 0, 'correct': 0, 'random': 0.0}


def _finish(e: dict) -> dict:
    n = max(1, e['n'])
    return {'n': int(e['n']), 'unmatched': int(e['unmatched']), 'correct': int(e['correct']),
            'accuracy': e['correct'] / n, 'accuracy_matched': e['correct'] / max(1, e['matched']),
            'random_baseline': e['random'] / n}


def grounding_markdown(report: dict, title: str = 'Grounding accuracy') -> str:
    """A per-relation table (top-1, model vs random mark)."""
    lines = [f'### {title}', '',
             f"Top-1 over {report['n_queries']} queries on {report['n_scenes']} held-out scenes "
             f"(seeds {report['seeds']}): **{report['accuracy']:.3f}** "
             f"(random mark {report['random_baseline']:.3f}); "
             f"{report['n_unmatched']} queries had no mark on their target "
             f"(match rate {report['match_rate']:.3f}), accuracy on matched queries "
             f"{report['accuracy_matched']:.3f}.", '',
             '| relation | queries | unmatched | top-1 | top-1 (matched) | random mark |',
             '|---|---:|---:|---:|---:|---:|']
    for rel, e in report['per_relation'].items():
        lines.append(f"| {rel} | {e['n']} | {e['unmatched']} | {e['accuracy']:.3f} | "
                     f"{e['accuracy_matched']:.3f} | {e['random_baseline']:.3f} |")
    lines.append(f"| **all** | {report['n_queries']} | {report['n_unmatched']} | "
                 f"**{report['accuracy']:.3f}** | {report['accuracy_matched']:.3f} | "
                 f"{report['random_baseline']:.3f} |")
    return '\n'.join(lines) + '\n'


def grounding_plot(report: dict, path: str | Path, title: str = 'Top-1 grounding accuracy'):
    """Bar plot: accuracy vs relation, model and random mark side by side."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import numpy as np

    rels = list(report['per_relation'])
    model = [report['per_relation'][r]['accuracy'] for r in rels]
    rand = [report['per_relation'][r]['random_baseline'] for r in rels]
    x = np.arange(len(rels))
    fig, ax = plt.subplots(figsize=(max(6, 0.7 * len(rels) + 2), 3.6))
    ax.bar(x - 0.2, model, 0.4, label=f"model (all {report['accuracy']:.2f})")
    ax.bar(x + 0.2, rand, 0.4, label=f"random mark ({report['random_baseline']:.2f})")
    ax.set_xticks(x, rels, rotation=35, ha='right')
    ax.set_ylim(0, 1)
    ax.set_ylabel('top-1 accuracy')
    ax.set_title(f"{title} ({report['n_queries']} queries, seeds {report['seeds']})")
    ax.legend(loc='upper right', fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def write_report(report: dict, out_json: str | Path, plot: bool = True) -> list[Path]:
    """JSON + markdown (+ PNG) next to each other: F.json, F.md, F.png."""
    out_json = Path(out_json)
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(report, indent=2) + '\n', encoding='utf-8')
    md = out_json.with_suffix('.md')
    md.write_text(grounding_markdown(report), encoding='utf-8')
    written = [out_json, md]
    if plot:
        written.append(grounding_plot(report, out_json.with_suffix('.png')))
    return written
