"""``spatial-llava eval grounding`` contract: JSON with top-level accuracy, per relation,
table and plot, with the shipped default model; unmatched targets count as failures."""

import json

import pytest

from spatial_llava_ros.cli import main
from spatial_llava_ros.evaluation.grounding import evaluate_grounding, grounding_markdown
from spatial_llava_ros.evaluation.matching import match_marks


def test_eval_grounding_cli_writes_json_table_and_plot(tmp_path, capsys):
    out = tmp_path / 'g.json'
    assert main(['eval', 'grounding', '--seeds', '0:2', '--out', str(out), '--no-progress']) == 0
    report = json.loads(out.read_text())
    assert 0.0 <= report['accuracy'] <= 1.0
    assert report['n_scenes'] == 2 and report['seeds'] == '0:2'
    per = report['per_relation']
    assert sum(e['n'] for e in per.values()) == report['n_queries'] > 0
    assert sum(e['correct'] for e in per.values()) == pytest.approx(
        report['accuracy'] * report['n_queries'])
    assert sum(e['unmatched'] for e in per.values()) == report['n_unmatched']
    assert 0.0 < report['random_baseline'] < 1.0
    assert (tmp_path / 'g.md').read_text().startswith('### Grounding accuracy')
    assert (tmp_path / 'g.png').stat().st_size > 1000
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])['n_queries'] == \
        report['n_queries']


class _Always:
    """A resolver stand-in that always names the first mark (to check the bookkeeping)."""

    def score_batch(self, image, mark_ids, queries):
        class R:
            best_id = sorted(mark_ids)[0]
        return [R() for _ in queries]

    def forget_frames(self):
        pass


def test_unmatched_targets_count_as_failures():
    from spatial_llava_ros.training.synthetic import SomSettings

    # 64x48 frames: the marks engine misses objects, so some targets have no mark
    report = evaluate_grounding(_Always(), list(range(6)), SomSettings(64, 48, 14.0))
    assert report['n_unmatched'] > 0
    matched = report['n_queries'] - report['n_unmatched']
    assert report['accuracy'] == pytest.approx(report['accuracy_matched'] * matched
                                               / report['n_queries'])
    assert '| **all** |' in grounding_markdown(report)


def test_match_marks_is_one_to_one_by_iou():
    import numpy as np

    inst = np.zeros((10, 10), np.int32)
    inst[:, :5] = 1
    inst[:, 5:] = 2
    whole = np.zeros((10, 10), bool)
    whole[:, :] = True  # overlaps both objects with IoU 0.5
    left = inst == 1
    matched = match_marks({1: whole, 2: left}, inst)
    assert matched[1] == (2, 1.0)  # the exact mask wins object 1
    assert matched[2] == (1, 0.5)  # the big mask is left for object 2
    assert match_marks({1: whole}, inst, min_iou=0.6) == {}
