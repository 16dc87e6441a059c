"""A curriculum phase on chosen relations (``data.relations``): training sees only those
queries, validation still asks every relation and reports each one."""

import json

import pytest

from spatial_llava_ros.errors import InputError
from spatial_llava_ros.training.config import TrainConfig
from spatial_llava_ros.training.synthetic import SomSettings, keep_relations, marked_scene

TINY = {'output_dir': None, 'steps': 2, 'batch_size': 2, 'lr': 1e-2, 'warmup_steps': 1,
        'log_every': 1, 'eval_every': 2, 'save_every': 2, 'threads': 1,
        'model': {'image_size': 32, 'patch_size': 8, 'vision_hidden': 32, 'vision_layers': 1,
                  'vision_feature_layer': -1, 'text_hidden': 32, 'text_layers': 1,
                  'heads': 2},
        'data': {'train_seeds': '7000:7003', 'val_seeds': '7100:7103', 'scene_width': 160,
                 'scene_height': 120, 'text_height_336': 30.0, 'queries_per_frame': 4,
                 'relations': ['color']}}


def test_only_the_chosen_relations_are_kept():
    frames = [marked_scene(s, SomSettings(160, 120, 30.0), 40) for s in range(7000, 7004)]
    before = {r for f in frames for _, _, r in f.queries}
    assert 'color' in before and len(before) > 1
    keep_relations(frames, ['color', 'left_of'])
    after = {r for f in frames for _, _, r in f.queries}
    assert after and after <= {'color', 'left_of'}


@pytest.mark.parametrize('relations', [['colour'], []])
def test_an_unknown_or_empty_relation_list_is_refused(tmp_path, relations):
    raw = {**TINY, 'output_dir': str(tmp_path), 'data': {**TINY['data'], 'relations': relations}}
    with pytest.raises(InputError, match='data.relations'):
        TrainConfig.from_dict(raw)


def test_validation_reports_every_relation_while_training_sees_one(tmp_path):
    from spatial_llava_ros.training.trainer import train

    cfg = TrainConfig.from_dict({**TINY, 'output_dir': str(tmp_path)})
    train(cfg, progress=False)
    entries = [json.loads(line) for line in (tmp_path / 'train_log.jsonl').open()]
    by_relation = [e['val_acc_by_relation'] for e in entries if 'val_acc_by_relation' in e]
    assert by_relation and len(by_relation[-1]) > 1  # not only colour
    assert all(0.0 <= v <= 1.0 for v in by_relation[-1].values())


def test_weighted_queries_draw_the_weighted_relation_more_often():
    import random

    from spatial_llava_ros.training.synthetic import weighted_queries

    queries = [(f'q{i}', i, 'smallest' if i < 5 else 'left_of') for i in range(20)]
    rng = random.Random(0)
    plain = weighted = 0
    for _ in range(400):
        plain += sum(r == 'smallest' for _, _, r in weighted_queries(queries, 6, {}, rng))
        picked = weighted_queries(queries, 6, {'smallest': 4.0}, rng)
        assert len(picked) == 6 and len({m for _, m, _ in picked}) == 6  # no repeats
        weighted += sum(r == 'smallest' for _, _, r in picked)
    assert weighted > 1.5 * plain  # 5 of 20 drawn ~1.5 per step plainly, ~3 at weight 4


@pytest.mark.parametrize('weights,match', [({'colour': 2}, 'unknown'),
                                           ({'smallest': 0}, '> 0')])
def test_bad_relation_weights_are_refused(tmp_path, weights, match):
    raw = {**TINY, 'output_dir': str(tmp_path),
           'data': {**TINY['data'], 'relation_weights': weights}}
    with pytest.raises(InputError, match=match):
        TrainConfig.from_dict(raw)


def test_a_frame_pool_with_relation_weights_trains(tmp_path):
    from spatial_llava_ros.training.trainer import train

    data = {k: v for k, v in TINY['data'].items() if k != 'relations'}
    cfg = TrainConfig.from_dict({**TINY, 'output_dir': str(tmp_path),
                                 'data': {**data, 'relation_weights': {'smallest': 3}}})
    train(cfg, progress=False)
    assert (tmp_path / 'final' / 'config.json').exists()
