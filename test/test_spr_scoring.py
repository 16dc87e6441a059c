"""SPR without a model: region growing, grounding parser, both scores, refinement, pairing."""

import json
import math

import numpy as np
import pytest

from spatial_llava_ros.errors import InputError
from spatial_llava_ros.spr.annotations import AnnotatedObject, SceneAnnotation
from spatial_llava_ros.spr.config import load_spr_config, load_train_config
from spatial_llava_ros.spr.grounding import parse_description
from spatial_llava_ros.spr.jsonl import append_jsonl, read_jsonl
from spatial_llava_ros.spr.refine import best_pair, refine_description
from spatial_llava_ros.spr.regions import QueryRegion, box_gap, grow_region, sample_regions
from spatial_llava_ros.spr.scoring import score_description

CATS = ['mug', 'box', 'chair', 'lamp', 'table', 'sofa', 'bottle']
COLS = ['red', 'blue', 'green', 'yellow', 'white', 'black']


def _obj(i, cat, col, box, x=0.0, z=3.0, mark=None):
    # identity camera pose: world coordinates are optical ones (x right, z forward)
    return AnnotatedObject(i, cat, col, box, (x, 0.0, z), (0.3, 0.3, 0.3), 0.0,
                           i if mark is None else mark)


@pytest.fixture
def scene() -> SceneAnnotation:
    objs = [_obj(1, 'mug', 'red', (10, 10, 30, 30), x=-1.5),
            _obj(2, 'box', 'blue', (40, 10, 60, 30), x=-0.5),
            _obj(3, 'chair', 'green', (70, 10, 90, 30), x=0.5),
            _obj(4, 'lamp', 'yellow', (10, 40, 30, 60), x=1.5),
            _obj(5, 'table', 'white', (40, 40, 60, 60), x=2.5),
            _obj(6, 'sofa', 'black', (200, 150, 260, 190), x=4.0)]
    iou = {i: {i: 0.9} for i in range(1, 7)}
    iou[2][1] = 0.05  # mark 2 grazes the mug
    return SceneAnnotation('s0', 320, 240, objs, {o.mark_id: o.box for o in objs}, iou,
                           np.eye(4))


@pytest.fixture
def region() -> QueryRegion:
    return QueryRegion('s0', 0, [1, 2, 3, 4, 5], [1, 2, 3, 4, 5], (10, 10, 90, 60))


PERFECT = ('the red mug (mark 1) is left of the blue box (mark 2). the green chair (mark 3), '
           'the yellow lamp (mark 4) and the white table (mark 5).')


# ---- region growing ---------------------------------------------------------------------

def test_region_growing_by_hand(scene):
    # from the mug: box (gap 10) before chair (gap 10 after box joins) ... sofa is far away
    assert grow_region(scene.objects, 1, 5) == [1, 2, 4, 5, 3]
    assert grow_region(scene.objects, 6, 3)[0] == 6
    assert grow_region(scene.objects, 6, 99) == grow_region(scene.objects, 6, 6)  # all
    with pytest.raises(InputError, match='start object 42'):
        grow_region(scene.objects, 42)


def test_region_growing_on_a_synthetic_scene():
    from spatial_llava_ros.spr.stages import scene_annotation
    from spatial_llava_ros.training.synthetic import SomSettings

    ann, image = scene_annotation(3, SomSettings(scene_width=320, scene_height=240))
    assert image.shape == (240, 320, 3)
    marked = [o for o in ann.objects if o.mark_id is not None]
    assert len(marked) >= 5
    regions = sample_regions(ann, 3, np.random.default_rng(0), min_objects=5)
    assert len(regions) == 3
    assert len({frozenset(r.instance_ids) for r in regions}) == 3
    for r in regions:
        assert len(r.instance_ids) == len(set(r.instance_ids)) == 5  # "more than four"
        boxes = [ann.object(i).box for i in r.instance_ids]
        assert r.box == (min(b[0] for b in boxes), min(b[1] for b in boxes),
                         max(b[2] for b in boxes), max(b[3] for b in boxes))
        assert sorted(r.mark_ids) == sorted(ann.object(i).mark_id for i in r.instance_ids)
        # every object joined as the nearest one to the region grown so far
        for k in range(1, 5):
            grown = [ann.object(i).box for i in r.instance_ids[:k]]
            ubox = (min(b[0] for b in grown), min(b[1] for b in grown),
                    max(b[2] for b in grown), max(b[3] for b in grown))
            gaps = [box_gap(o.box, ubox) for o in marked if o.instance_id
                    not in r.instance_ids[:k]]
            assert math.isclose(box_gap(ann.object(r.instance_ids[k]).box, ubox), min(gaps))
    # a scene with too few marked objects gives no region
    assert sample_regions(ann, 2, np.random.default_rng(0), min_size=99) == []


# ---- parsing ----------------------------------------------------------------------------

def test_parser_reads_the_syntaxes():
    p = parse_description(PERFECT, CATS, COLS)
    assert [(m.color, m.category, m.grounding.mark) for m in p.mentions] == [
        ('red', 'mug', 1), ('blue', 'box', 2), ('green', 'chair', 3), ('yellow', 'lamp', 4),
        ('white', 'table', 5)]
    assert [(r.name, r.subject, r.object) for r in p.relations] == [('left_of', 0, 1)]
    for text, mark in [('a red mug [7] here', 7), ('the red mug (7)', 7),
                       ('Mark 7. It is the red mug.', 7), ('red mugs <7>', 7),
                       ('the red mug #7', 7), ('the red mug (Mark #7)', 7),
                       ('7: the red mug.', 7), ('Here. 7: the red mug', 7)]:
        p = parse_description(text, CATS, COLS)
        assert [(m.category, m.grounding.mark) for m in p.mentions] == [('mug', mark)], text
    p = parse_description('<ref>the red mug</ref><box>[0.1, 0.2, 0.3, 0.4]</box>', CATS, COLS)
    assert p.mentions[0].grounding.box == (0.1, 0.2, 0.3, 0.4)
    p = parse_description('some things and 3 apples', CATS, COLS)
    assert p.mentions == [] and p.groundings == []
    assert parse_description('', CATS, COLS).mentions == []


# ---- scores -----------------------------------------------------------------------------

def test_perfect_description_scores_highest(scene, region):
    perfect = score_description(PERFECT, region, scene)
    assert perfect.semantic == pytest.approx(1.0)
    assert perfect.localization == pytest.approx(0.9)  # every mark covers its object at 0.9
    assert perfect.relations == 1.0 and perfect.n_matched == 5
    others = ['the red mug (mark 2) is left of the blue box (mark 1). the green chair (mark 3), '
              'the yellow lamp (mark 4) and the white table (mark 5).',
              'the mug (mark 1), the box (mark 2), the chair (mark 3), the lamp (mark 4), '
              'the table (mark 5).', 'the red mug (mark 1).', 'There are some things here.',
              PERFECT.replace('(mark 4)', '(mark 6)'), PERFECT + ' the black sofa (mark 6).']
    for text in others:
        assert score_description(text, region, scene).total < perfect.total, text


def test_wrong_grounding_lowers_localization(scene, region):
    perfect = score_description(PERFECT, region, scene)
    swapped = PERFECT.replace('(mark 1)', '(mark X)').replace('(mark 2)', '(mark 1)') \
        .replace('(mark X)', '(mark 2)')
    wrong = score_description(swapped, region, scene)
    assert wrong.localization < perfect.localization
    assert wrong.n_matched == 3
    outside = score_description(PERFECT.replace('(mark 5)', '(mark 6)'), region, scene)
    assert outside.localization < perfect.localization  # grounded outside the region
    ungrounded = score_description(PERFECT.replace(' (mark 3)', ''), region, scene)
    assert ungrounded.localization < perfect.localization  # coverage
    assert score_description('the red mug.', region, scene).localization == 0.0


def test_vague_description_lowers_semantic(scene, region):
    perfect = score_description(PERFECT, region, scene)
    no_colour = score_description(PERFECT.replace('red ', '').replace('blue ', '')
                                  .replace('green ', ''), region, scene)
    assert no_colour.semantic < perfect.semantic
    assert no_colour.localization == pytest.approx(perfect.localization)
    few = score_description('the red mug (mark 1).', region, scene)
    assert few.semantic < no_colour.semantic
    nothing = score_description('There are some things here.', region, scene)
    assert nothing.semantic == 0.0 and nothing.total == 0.0
    wrong_colour = score_description(PERFECT.replace('red mug', 'green mug'), region, scene)
    assert wrong_colour.semantic < perfect.semantic
    hallucinated = score_description(PERFECT + ' a bottle (mark 9).', region, scene)
    assert hallucinated.precision < 1.0
    backwards = score_description(PERFECT.replace('left of', 'right of'), region, scene)
    assert backwards.relations == 0.0 and backwards.semantic < perfect.semantic


def test_box_groundings_are_scored_by_iou(scene, region):
    exact = ('the red mug [10, 10, 30, 30], the blue box [40, 10, 60, 30], the green chair '
             '[70, 10, 90, 30], the yellow lamp [10, 40, 30, 60], the white table [40, 40, 60, '
             '60]')
    s = score_description(exact, region, scene)
    assert s.localization == pytest.approx(1.0)
    frac = score_description('the red mug [0.03125, 0.0416667, 0.09375, 0.125]', region, scene)
    assert frac.mean_iou == pytest.approx(1.0, abs=1e-3)
    shifted = score_description(exact.replace('[10, 10, 30, 30]', '[20, 20, 40, 40]'),
                                region, scene)
    assert shifted.localization < s.localization


# ---- refinement and pairs -----------------------------------------------------------------

def test_refinement_fixes_groundings(scene, region):
    wrong = ('the red mug (mark 2) is left of the blue box (mark 1). the green chair (mark 3), '
             'the yellow lamp (mark 9) and the white table (mark 5).')
    refs = refine_description(wrong, region, scene)
    assert refs[0].kind == 'regrounded'
    assert refs[0].text == PERFECT
    assert score_description(refs[0].text, region, scene).total > \
        score_description(wrong, region, scene).total
    partial = 'the red mug is left of the blue box (mark 2), and a bottle (mark 4).'
    texts = {r.kind: r.text for r in refine_description(partial, region, scene)}
    assert texts['regrounded'] == 'the red mug is left of the blue box (mark 2), and a bottle.'
    assert texts['grounded'] == ('the red mug (mark 1) is left of the blue box (mark 2), and '
                                 'a bottle.')
    assert refine_description(PERFECT, region, scene)[0].text == PERFECT


def test_pairing_best_refinement_vs_worst_initial():
    def item(text, total):
        return {'text': text, 'score': {'total': total}}

    initial = [item('a', 0.4), item('b', 0.1), item('c', 0.7)]
    refined = [item('a2', 0.9), item('b2', 1.2), item('c', 0.7)]
    chosen, rejected = best_pair(initial, refined)
    assert chosen['text'] == 'b2' and rejected['text'] == 'b'
    assert best_pair(initial, refined, min_margin=1.5) is None
    assert best_pair([item('x', 0.5)], [item('x', 0.9)]) is None  # same text
    assert best_pair([item('x', 0.5)], [item('y', 0.5)]) is None  # no gain
    assert best_pair([], refined) is None


# ---- files and config ---------------------------------------------------------------------

def test_jsonl_survives_a_torn_last_line(tmp_path):
    path = tmp_path / 'a.jsonl'
    append_jsonl(path, [{'a': 1}, {'a': 2}])
    with path.open('a') as fh:
        fh.write('{"a": 3, "b"')  # a writer killed mid-line
    assert [r['a'] for r in read_jsonl(path)] == [1, 2]
    append_jsonl(path, [{'a': 4}])
    assert [r['a'] for r in read_jsonl(path)] == [1, 2, 4]
    path.write_text('{"a": 1}\nnot json\n{"a": 2}\n')
    with pytest.raises(InputError, match='a.jsonl:2'):
        list(read_jsonl(path))
    with pytest.raises(InputError, match='does not exist'):
        list(read_jsonl(tmp_path / 'none.jsonl'))


def test_configs_load_and_reject_typos(tmp_path):
    cfg = load_spr_config()
    assert cfg['data']['min_objects'] == 5 and set(cfg['prompts']['kinds']) == {
        'marked', 'crop', 'refs'}
    assert load_train_config()['beta'] > 0
    bad = tmp_path / 'bad.yaml'
    bad.write_text('sampling: {temprature: 0.5}\n')
    with pytest.raises(InputError, match='temprature'):
        load_spr_config(bad)
    bad.write_text('beta: 0\n')
    with pytest.raises(InputError, match='beta'):
        load_train_config(bad)
    json.dumps(cfg)  # what generate records in WORK/spr_config.json


def test_bare_mark_answers(scene, region):
    # a model fine-tuned on grounding alone answers every question with a mark number
    inside = score_description('3', region, scene)
    assert inside.n_groundings == 1 and inside.semantic == 0.0
    assert inside.localization == pytest.approx(0.9 / 5)  # one of five objects, IoU 0.9
    assert score_description('6', region, scene).localization == 0.0  # outside the region
    assert score_description('marks 1, 2 and 3.', region, scene).localization == \
        pytest.approx(2.7 / 5)
    assert refine_description('6', region, scene) == []  # nothing left to keep
    assert [r.text for r in refine_description('3', region, scene)] == ['3']
