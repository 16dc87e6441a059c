"""Converter: SUN-Spot-style folders -> marked images + LLaVA conversations, on fixed scenes."""

import json

import pytest

from spatial_llava_ros.errors import InputError
from spatial_llava_ros.training.conversations import load_templates, scene_turns
from spatial_llava_ros.training.convert import convert, is_val


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    from spatial_llava_ros.scene.generate import generate_scene
    from spatial_llava_ros.scene.io import write_scene

    root = tmp_path_factory.mktemp('ann')
    scenes = {}
    for seed in (0, 1, 2):
        scenes[seed] = generate_scene(seed, 320, 240)
        write_scene(scenes[seed], root / f'scene_{seed:04d}')
    return root, scenes


def test_converter_output_on_a_fixed_scene(exported, tmp_path):
    root, scenes = exported
    out = tmp_path / 'conv'
    summary = convert(root, out, val_fraction=0.0, seed=0)
    assert summary.scenes == 3 and summary.train_records == 3 and summary.val_records == 0
    assert summary.skipped == []
    records = {r['id']: r for r in json.loads((out / 'train.json').read_text())}
    rec = records['scene_0000']
    assert (out / rec['image']).is_file()
    conv = rec['conversations']
    assert conv[0]['from'] == 'human' and conv[0]['value'].startswith('<image>\n')
    assert [c['from'] for c in conv] == ['human', 'gpt'] * (len(conv) // 2)
    assert sum('<image>' in c['value'] for c in conv) == 1
    kinds = set(rec['kinds'])
    assert {'grounding', 'grounding_reason', 'yes_no'} <= kinds
    # gt marks: every object of the scene has a number, numbers are the listed marks
    scene = scenes[0]
    assert len(rec['marks']) == len(scene.objects)
    # every number-only answer is one of the marks; reasons start with the mark
    for q, a, kind in zip(conv[0::2], conv[1::2], rec['kinds']):
        if kind == 'grounding':
            assert q['value'].endswith('Answer with the mark number only.')
            assert int(a['value']) in rec['marks']
        if kind == 'grounding_reason':
            assert any(a['value'].startswith(p) for p in ('Mark ', *map(str, rec['marks'])))
    # negatives exist and are answered "No" (the generator balances true/false captions)
    answers = [a['value'] for a, k in zip(conv[1::2], rec['kinds']) if k == 'yes_no']
    assert any(a.startswith('No,') for a in answers) and any(a.startswith('Yes,') for a in answers)
    # same input, same output (templates are drawn with a fixed seed)
    again = convert(root, tmp_path / 'again', val_fraction=0.0, seed=0)
    assert again.kinds == summary.kinds
    assert (tmp_path / 'again' / 'train.json').read_text() == (out / 'train.json').read_text()


def test_answers_match_ground_truth_marks(exported):
    _, scenes = exported
    scene = scenes[1]
    templates = load_templates()
    marks_of = {o.instance_id: 10 + o.instance_id for o in scene.objects}
    turns = scene_turns(scene, marks_of, templates, max_turns=100)
    by_text = {e.text: e for e in scene.expressions}
    for t in turns:
        if t.kind == 'grounding':
            text = t.question.removeprefix('Which mark is ').split('?')[0]
            assert t.answer == str(marks_of[by_text[text].target_id])
    attribute = [t for t in turns if t.kind == 'attribute']
    for t in attribute:
        obj = next(o for o in scene.objects if marks_of[o.instance_id] == t.target_mark)
        assert obj.color_name in t.question


def test_split_is_by_scene_and_stable():
    names = [f'scene_{i:04d}' for i in range(400)]
    val = [n for n in names if is_val(n, 0.25)]
    assert 60 < len(val) < 140
    assert val == [n for n in names if is_val(n, 0.25)]


def test_missing_annotations_is_a_typed_error(tmp_path):
    with pytest.raises(InputError, match='no annotation.json'):
        convert(tmp_path, tmp_path / 'out')
    with pytest.raises(InputError, match='does not exist'):
        convert(tmp_path / 'nope', tmp_path / 'out')
