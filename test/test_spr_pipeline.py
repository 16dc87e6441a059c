"""SPR end to end on a tiny random LLaVA: generate -> score -> pairs -> 2-step DPO -> resolver."""

import json

import numpy as np
import pytest
from needs import missing, needs

from spatial_llava_ros.cli import main
from spatial_llava_ros.spr.jsonl import append_jsonl, read_jsonl


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    from spatial_llava_ros.model.tiny import make_tiny_model
    from spatial_llava_ros.scene.catalog import CATEGORIES, COLORS
    from spatial_llava_ros.spr.config import load_spr_config

    questions = ' '.join(load_spr_config()['prompts']['questions'].values())
    words = [c.replace('_', ' ') for c in CATEGORIES] + list(COLORS) + questions.split()
    return make_tiny_model(tmp_path_factory.mktemp('spr') / 'tiny', words=words)


def _cfg(tmp_path):
    path = tmp_path / 'spr.yaml'
    path.write_text('data: {scene_width: 320, scene_height: 240, regions_per_scene: 1}\n'
                    'prompts: {kinds: [marked, crop]}\n'
                    'sampling: {samples_per_prompt: 2, max_new_tokens: 12}\n')
    return str(path)


def _stages(tiny, tmp_path, capsys):
    """generate -> score -> pairs on two scenes, checked; returns (work, regions)."""
    work, cfg = tmp_path / 'work', _cfg(tmp_path)
    args = ['spr', 'generate', str(work), '--model', str(tiny), '--config', cfg,
            '--seeds', '3,5', '--threads', '1', '--no-progress']
    assert main(args) == 0
    stats = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert stats['scenes'] == 2 and stats['regions'] >= 1
    descs = list(read_jsonl(work / 'descriptions.jsonl'))
    assert len(descs) == stats['regions'] * 2 * 2  # 2 kinds x 2 samples per region
    assert all(isinstance(d['text'], str) for d in descs)
    regions = list(read_jsonl(work / 'regions.jsonl'))
    assert all((work / r['image']).is_file() and len(r['instance_ids']) >= 3 for r in regions)
    assert main(args) == 0  # resumable: nothing left to do
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])['skipped_done'] == 2
    assert len(list(read_jsonl(work / 'descriptions.jsonl'))) == len(descs)

    # The random model rarely grounds anything; add what a model could have written about
    # each region: a description with every mark wrong, and a vague one.
    scenes = {s['scene_id']: s for s in read_jsonl(work / 'scenes.jsonl')}
    extra = []
    for r in regions:
        objs = {o['instance_id']: o for o in scenes[r['scene_id']]['objects']}
        names = [f'the {objs[i]["color"]} {objs[i]["category"].replace("_", " ")}'
                 for i in r['instance_ids']]
        marks = r['mark_ids'][1:] + r['mark_ids'][:1]  # every mark shifted by one
        wrong = ', '.join(f'{n} (mark {m})' for n, m in zip(names, marks)) + '.'
        for k, text in enumerate([wrong, 'some things.']):
            extra.append({'scene_id': r['scene_id'], 'region_id': r['region_id'],
                          'kind': 'marked', 'sample': 90 + k, 'question': r['question'],
                          'text': text})
    append_jsonl(work / 'descriptions.jsonl', extra)

    assert main(['spr', 'score', str(work), '--config', cfg, '--no-progress',
                 '--summary', str(tmp_path / 'summary.json')]) == 0
    summary = json.loads((tmp_path / 'summary.json').read_text())
    assert summary['initial']['n'] == len(descs) + len(extra)
    assert summary['refined']['localization'] > summary['initial']['localization']
    assert main(['spr', 'pairs', str(work), '--config', cfg]) == 0
    pairs = list(read_jsonl(work / 'pairs.jsonl'))
    assert len(pairs) == len(regions)
    for p in pairs:
        assert p['chosen_score']['total'] > p['rejected_score']['total']
        assert p['chosen_score']['localization'] > 0.3  # the refined wrong description
    capsys.readouterr()
    return work, regions


def test_spr_stages(tiny, tmp_path, capsys):
    _stages(tiny, tmp_path, capsys)


@needs('datasets', 'peft', 'trl')
def test_spr_dpo_on_the_pairs(tiny, tmp_path, capsys):
    work, regions = _stages(tiny, tmp_path, capsys)
    out = tmp_path / 'dpo'
    train_cfg = tmp_path / 'train.yaml'
    train_cfg.write_text('learning_rate: 1.0e-2\nper_device_train_batch_size: 2\n'
                         'save_steps: 1\nlogging_steps: 1\nlora: {r: 4, alpha: 8}\n')
    assert main(['spr', 'train', str(work), '--out', str(out), '--model', str(tiny),
                 '--config', str(train_cfg), '--max-steps', '2', '--threads', '1',
                 '--no-progress']) == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert metrics['global_step'] == 2 and np.isfinite(metrics['train_loss'])
    assert (out / 'checkpoint-2').is_dir() and (out / 'adapter_config.json').is_file()

    from spatial_llava_ros.model.loading import load_model
    from spatial_llava_ros.model.resolver import Resolver

    base = load_model(tiny)
    tuned = Resolver.from_pretrained(out)
    assert tuned.loaded.adapter == out and tuned.loaded.path == tiny.resolve()
    a, b = base.model.state_dict(), tuned.model.state_dict()
    changed = [k for k in a if not np.allclose(a[k].numpy(), b[k].numpy())]
    assert changed and all('language_model' in k for k in changed)  # LoRA on the LM only
    image = np.asarray(__import__('PIL.Image').Image.open(work / regions[0]['image'])
                       .convert('RGB'))
    res = tuned.score(image, regions[0]['mark_ids'], 'the red chair')
    assert sum(res.scores.values()) == pytest.approx(1.0)
    assert isinstance(tuned.answer(image, 'Describe the objects.', 8), str)

    # resumable: a longer run starts from the saved checkpoint
    assert main(['spr', 'train', str(work), '--out', str(out), '--model', str(tiny),
                 '--config', str(train_cfg), '--max-steps', '3', '--threads', '1',
                 '--no-progress']) == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert metrics['resumed_from'].endswith('checkpoint-2') and metrics['global_step'] == 3


def test_spr_errors_are_one_line(tiny, tmp_path, capsys):
    assert main(['spr', 'score', str(tmp_path / 'nowhere')]) == 2
    assert 'does not exist' in capsys.readouterr().err
    assert main(['spr', 'generate', str(tmp_path / 'w'), '--model', str(tiny),
                 '--kinds', 'marked,zoom']) == 2
    assert 'zoom' in capsys.readouterr().err
    (tmp_path / 'w2').mkdir()
    (tmp_path / 'w2' / 'pairs.jsonl').write_text('')
    assert main(['spr', 'train', str(tmp_path / 'w2'), '--out', str(tmp_path / 'o'),
                 '--model', str(tiny)]) == 2
    # without the train extra the missing extra is the one line, before the pairs are read
    expected = "needs the 'train' extra" if missing('datasets') else 'no preference pairs'
    assert expected in capsys.readouterr().err


def test_generate_from_scene_folders(tiny, tmp_path, capsys):
    from spatial_llava_ros.scene.generate import generate_scene
    from spatial_llava_ros.scene.io import write_scene

    scene = generate_scene(3, 320, 240)
    for obj in scene.objects:  # real data: no 3D boxes
        obj.center = obj.center * np.nan
    write_scene(scene, tmp_path / 'scenes' / 'kitchen_01')
    work = tmp_path / 'work'
    assert main(['spr', 'generate', str(work), '--model', str(tiny), '--config', _cfg(tmp_path),
                 '--scenes-dir', str(tmp_path / 'scenes'), '--kinds', 'refs', '--samples', '1',
                 '--threads', '1', '--no-progress']) == 0
    stats = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert stats['scenes'] == 1 and stats['regions'] == 1
    (scene_rec,) = read_jsonl(work / 'scenes.jsonl')
    assert scene_rec['scene_id'] == 'kitchen_01'
    assert all(o['center'] is None for o in scene_rec['objects'])
    (desc,) = read_jsonl(work / 'descriptions.jsonl')
    assert desc['kind'] == 'refs' and 'at marks ' in desc['question']
    assert main(['spr', 'score', str(work), '--no-progress']) == 0
