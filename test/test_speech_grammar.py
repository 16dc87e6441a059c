"""The command grammar built from a scene: what it allows, what it forbids, and rebuilds."""

import pytest
from needs import require

from spatial_llava_ros.speech.command import parse_command, wer, word_errors
from spatial_llava_ros.speech.grammar import (
    SceneVocabulary,
    build_jsgf,
    default_vocabulary,
    number_to_words,
    words_to_number,
)


@pytest.fixture(scope='module')
def backend():
    require('pocketsphinx')
    from spatial_llava_ros.speech.pocketsphinx_backend import PocketsphinxBackend

    return PocketsphinxBackend()


@pytest.fixture(scope='module')
def scene():
    from spatial_llava_ros.scene import generate_scene

    return generate_scene(3, 160, 120)


def accepts(backend, text: str) -> bool:
    return bool(backend._fsgs[0].accept(text))


def test_vocabulary_from_scene(scene):
    vocab = SceneVocabulary.from_scene(scene)
    cats = {o.category.replace('_', ' ') for o in scene.objects}
    assert set(vocab.categories) == cats
    assert set(vocab.colours) == {o.color_name for o in scene.objects}
    assert vocab.mark_ids == sorted(o.instance_id for o in scene.objects)
    assert set(vocab.pairs) == {(o.color_name, o.category.replace('_', ' '))
                                for o in scene.objects}
    most = max(sum(o.category == c for o in scene.objects) for c in {o.category
                                                                       for o in scene.objects})
    assert len(vocab.ordinals) == max(2, most)


def test_every_scene_expression_is_in_its_grammar(backend):
    from spatial_llava_ros.scene import generate_scene

    checked = 0
    for seed in range(1, 9):
        scene = generate_scene(seed, 160, 120)
        backend.set_vocabulary(SceneVocabulary.from_scene(scene))
        for expr in scene.expressions:
            for verb in ('go to', 'pick up', 'find', 'where is'):
                assert accepts(backend, f'{verb} {expr.text}'), (seed, expr.text)
                checked += 1
        for obj in scene.objects:
            assert accepts(backend, f'mark {number_to_words(obj.instance_id)}')
    assert checked > 100


def test_grammar_forbids_what_is_not_in_view(backend, scene):
    backend.set_vocabulary(SceneVocabulary.from_scene(scene))
    in_view = {o.category for o in scene.objects}
    absent = next(c for c in ('sofa', 'chair', 'table', 'laptop', 'book') if c not in in_view)
    obj = scene.objects[0]
    word = obj.category.replace('_', ' ')
    assert accepts(backend, f'go to the {word}')
    assert not accepts(backend, f'go to the {absent}')
    other_colour = next(c for c in ('red', 'green', 'blue', 'teal', 'white')
                        if (c, obj.category) not in {(o.color_name, o.category)
                                                     for o in scene.objects})
    assert accepts(backend, f'go to the {obj.color_name} {word}')
    assert not accepts(backend, f'go to the {other_colour} {word}')
    top = max(o.instance_id for o in scene.objects)
    assert not accepts(backend, f'mark {number_to_words(top + 1)}')
    assert not accepts(backend, 'what time is it')
    assert not accepts(backend, 'go to')  # an action needs a target


def test_grammar_is_rebuilt_when_the_scene_changes(backend):
    backend.set_vocabulary(SceneVocabulary.from_objects([('red', 'mug')], [1, 2]))
    assert accepts(backend, 'pick up the red mug') and accepts(backend, 'mark two')
    assert not accepts(backend, 'pick up the blue sofa')
    backend.set_vocabulary(SceneVocabulary.from_objects([('blue', 'sofa')], [9]))
    assert accepts(backend, 'pick up the blue sofa') and accepts(backend, 'mark nine')
    assert not accepts(backend, 'pick up the red mug') and not accepts(backend, 'mark two')
    backend.set_vocabulary(None)  # free decoding: no grammar
    assert backend.grammar is None


def test_default_vocabulary_follows_the_generator():
    from spatial_llava_ros.scene import CATEGORIES, COLORS

    vocab = default_vocabulary()
    assert vocab.categories == [c.replace('_', ' ') for c in CATEGORIES]
    assert vocab.colours == list(COLORS)
    assert 'trash can' in vocab.categories


def test_unpronounceable_words_are_dropped_not_fatal(backend):
    vocab = SceneVocabulary(categories=['mug', 'zxqv'], colours=['red'], mark_ids=[1])
    grammar = build_jsgf(vocab, backend.known_words)
    assert 'zxqv' in grammar.dropped and 'zxqv' not in grammar.jsgf
    with pytest.raises(ValueError, match='no speakable category'):
        build_jsgf(SceneVocabulary(categories=['zxqv']), backend.known_words)


def test_leftmost_is_pronounceable(backend):
    backend.set_vocabulary(SceneVocabulary.from_objects([('red', 'mug'), ('blue', 'mug')]))
    assert accepts(backend, 'find the leftmost mug')


def test_numbers_and_commands():
    assert [number_to_words(n) for n in (0, 7, 13, 20, 42)] == [
        'zero', 'seven', 'thirteen', 'twenty', 'forty two']
    assert all(words_to_number(number_to_words(n).split()) == n for n in range(100))
    assert words_to_number(['banana']) is None
    with pytest.raises(ValueError):
        number_to_words(100)
    c = parse_command('Go to the chair, left of the table.')
    assert (c.text, c.action, c.expression) == ('go to the chair left of the table', 'go_to',
                                                'the chair left of the table')
    c = parse_command('mark number twenty three')
    assert (c.text, c.action, c.mark_id) == ('mark 23', 'mark', 23)
    assert parse_command('pick up mark 4').text == 'pick up mark 4'
    assert parse_command('the red mug').action == ''


def test_wer():
    assert word_errors('go to the chair', 'go to a chair now') == (2, 4)
    assert wer(['a b c', 'd'], ['a b c', '']) == 0.25
    with pytest.raises(ValueError):
        wer(['a'], [])


def test_landmarks_must_pick_out_one_object(backend):
    objects = [('grey', 'vase'), ('red', 'vase'), ('blue', 'box'), ('green', 'lamp')]
    backend.set_vocabulary(SceneVocabulary.from_objects(objects, [1, 2, 3, 4]))
    assert accepts(backend, 'find the lamp behind the grey vase')
    assert accepts(backend, 'find the vase left of the box')
    assert not accepts(backend, 'find the lamp behind the vase')  # which vase?
    assert not accepts(backend, 'find the vase left of the blue vase')  # no blue vase
    assert accepts(backend, 'find the box between the red vase and the lamp')
    backend.set_vocabulary(SceneVocabulary.from_objects([('red', 'mug'), ('red', 'mug')]))
    assert accepts(backend, 'find the first mug from the left')
    assert not accepts(backend, 'find the mug left of the red mug')  # nothing is unique
