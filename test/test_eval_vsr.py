"""VSR metric on a hand-made 6-line file, meta-category mapping, bad input."""

import json

import numpy as np
import pytest

from spatial_llava_ros.errors import InputError
from spatial_llava_ros.evaluation.vsr import (
    META_CATEGORIES,
    evaluate_vsr,
    load_vsr_jsonl,
    meta_category,
    vsr_markdown,
    vsr_scores,
)

LINES = [
    {'image': 'a.png', 'caption': 'The mug is left of the box.', 'label': 1,
     'relation': 'left of'},
    {'image': 'a.png', 'caption': 'The box is left of the mug.', 'label': 0,
     'relation': 'left of'},
    {'image': 'b.png', 'caption': 'The cat is on the sofa.', 'label': 1, 'relation': 'on'},
    {'image': 'b.png', 'caption': 'The sofa is near the cat.', 'label': 1, 'relation': 'near'},
    {'image': 'c.png', 'caption': 'The dog is facing the tv.', 'label': 0, 'relation': 'facing'},
    {'image': 'c.png', 'caption': 'The lamp is next to the bed.', 'label': 0,
     'relation': 'next to'},
]


@pytest.fixture
def vsr_dir(tmp_path):
    from PIL import Image

    for name, value in (('a.png', 10), ('b.png', 120), ('c.png', 250)):
        Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(tmp_path / name)
    data = tmp_path / 'six.jsonl'
    data.write_text('\n'.join(json.dumps(r) for r in LINES) + '\n')
    return data


def test_six_line_file_scores_by_hand(vsr_dir):
    items = load_vsr_jsonl(vsr_dir)
    assert len(items) == 6
    # a predictor that says "true" only on the brightest image c.png and a.png:
    # line 1 right, 2 wrong, 3 wrong, 4 wrong, 5 wrong, 6 wrong -> 1/6
    def predict(image, caption):
        return int(image[0, 0, 0]) in (10, 250)

    scores = evaluate_vsr(items, vsr_dir.parent, predict)
    assert scores['accuracy'] == pytest.approx(1 / 6)
    assert scores['n'] == 6 and scores['n_true'] == 3
    assert scores['majority_baseline'] == pytest.approx(0.5)
    rel = scores['per_relation']
    assert rel['left of'] == {'n': 2, 'correct': 1, 'accuracy': 0.5}
    assert rel['on']['accuracy'] == 0.0 and rel['facing']['accuracy'] == 0.0
    meta = scores['per_meta_category']
    assert meta['Projective'] == {'n': 2, 'correct': 1, 'accuracy': 0.5}
    assert set(meta) == {'Projective', 'Topological', 'Proximity', 'Orientation', 'Unallocated'}
    assert meta['Unallocated']['n'] == 1  # next to
    assert '| Projective | 2 | 0.500 |' in vsr_markdown(scores)


def test_always_true_gets_the_true_share(vsr_dir):
    items = load_vsr_jsonl(vsr_dir)
    scores = vsr_scores(items, [True] * 6)
    assert scores['accuracy'] == pytest.approx(0.5)
    assert scores['per_relation']['near']['accuracy'] == 1.0


def test_meta_categories_cover_vsr_and_synthetic_names():
    names = [r for rels in META_CATEGORIES.values() for r in rels]
    assert len(names) == 71 and len(set(names)) == 70  # VSR's table lists 'among' twice
    assert meta_category('among') == 'Unallocated'  # the later entry wins, as in VSR's script
    assert meta_category('left_of') == 'Projective'
    assert meta_category('in_front_of') == 'Projective'
    assert meta_category('next_to') == 'Unallocated'
    assert meta_category('nearest') == 'Proximity'
    assert meta_category('Touching') == 'Topological'
    assert meta_category('made up relation') == 'Unallocated'


def test_bad_input_is_a_typed_error(tmp_path):
    bad = tmp_path / 'bad.jsonl'
    bad.write_text('{"image": "a.png", "caption": "x", "label": 1}\n')
    with pytest.raises(InputError, match=r'bad.jsonl:1: missing keys \[.relation.\]'):
        load_vsr_jsonl(bad)
    bad.write_text('{"image": "a.png", "caption": "x", "label": 3, "relation": "on"}\n')
    with pytest.raises(InputError, match='label must be 0/1'):
        load_vsr_jsonl(bad)
    bad.write_text('not json\n')
    with pytest.raises(InputError, match='bad.jsonl:1: not JSON'):
        load_vsr_jsonl(bad)
    with pytest.raises(InputError, match='does not exist'):
        load_vsr_jsonl(tmp_path / 'missing.jsonl')
    with pytest.raises(InputError, match='3 VSR items but 2 predictions'):
        vsr_scores(load_vsr_jsonl_items(tmp_path), [True, False])


def load_vsr_jsonl_items(tmp_path):
    good = tmp_path / 'good.jsonl'
    good.write_text('\n'.join(json.dumps(r) for r in LINES[:3]) + '\n')
    return load_vsr_jsonl(good)


def test_missing_image_is_reported(vsr_dir):
    items = load_vsr_jsonl(vsr_dir)
    (vsr_dir.parent / 'b.png').unlink()
    with pytest.raises(InputError, match=r'b.png not found'):
        evaluate_vsr(items, vsr_dir.parent, lambda image, caption: True)
