"""Resolver on a tiny random LLaVA (CPU): exact multi-digit scoring, one pass, frame reuse."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from spatial_llava_ros.errors import InputError, ResolveError
from spatial_llava_ros.model.image import pad_to_square, pixel_values
from spatial_llava_ros.model.loading import load_model
from spatial_llava_ros.model.prompt import PromptTemplate
from spatial_llava_ros.model.resolver import Resolver
from spatial_llava_ros.model.tiny import make_tiny_model
from spatial_llava_ros.model.tree import build_tree, tree_mask

MARKS = [1, 2, 3, 12, 37]
QUERY = 'the chair left of the table'


@pytest.fixture(scope='module')
def tiny_dir(tmp_path_factory):
    torch.set_num_threads(1)
    return make_tiny_model(tmp_path_factory.mktemp('tiny') / 'ckpt', seed=3)


@pytest.fixture(scope='module')
def loaded(tiny_dir):
    return load_model(tiny_dir, device='cpu')


@pytest.fixture()
def resolver(loaded):
    return Resolver(loaded)


@pytest.fixture(scope='module')
def image():
    return np.random.default_rng(1).integers(0, 256, (48, 64, 3), dtype=np.uint8)


def hand_log_likelihood(resolver: Resolver, image, marks, query, mark) -> tuple[float, list]:
    """log P(answer(mark) | prompt) from a plain HF forward (input_ids + pixel_values)."""
    frame_text = resolver.template.frame_text(marks)
    prefix = resolver.prefix_ids(frame_text)
    q = resolver.query_ids((resolver._ids(frame_text), frame_text), query)
    ans = resolver.answer_ids(mark)
    ids = torch.tensor([prefix + q + ans])
    pv = pixel_values(resolver.loaded.processor.image_processor, image)
    with torch.no_grad():
        logits = resolver.model(input_ids=ids, pixel_values=pv).logits[0]
    probs = torch.softmax(logits.double(), dim=-1)
    start = len(prefix) + len(q)
    token_probs = [float(probs[start + j - 1, tok]) for j, tok in enumerate(ans)]
    return math.log(math.prod(token_probs)), token_probs


def test_scores_sum_to_one_over_present_marks(resolver, image):
    res = resolver.score(image, MARKS, QUERY)
    assert sorted(res.scores) == sorted(MARKS)
    assert sum(res.scores.values()) == pytest.approx(1.0, abs=1e-6)
    assert all(0.0 < p < 1.0 for p in res.scores.values())
    assert [m for m, _ in res.ranked] == sorted(MARKS, key=lambda m: (-res.scores[m], m))
    assert res.best_id == res.ranked[0][0] and res.confidence == res.ranked[0][1]
    assert not res.abstained and res.query == QUERY


def test_multi_digit_answer_is_every_digit_then_eos(resolver):
    tok = resolver.tokenizer
    assert tok.convert_ids_to_tokens(resolver.answer_ids(12)) == ['1', '2', '</s>']
    assert tok.convert_ids_to_tokens(resolver.answer_ids(7)) == ['7', '</s>']


def test_multi_digit_score_equals_product_of_token_probabilities(resolver, image):
    res = resolver.score(image, MARKS, QUERY)
    hand = {}
    for mark in MARKS:
        hand[mark], token_probs = hand_log_likelihood(resolver, image, MARKS, QUERY, mark)
        assert len(token_probs) == len(str(mark)) + 1
        assert res.log_likelihoods[mark] == pytest.approx(hand[mark], abs=1e-4)
    lse = math.log(sum(math.exp(v) for v in hand.values()))
    for mark in MARKS:
        assert res.scores[mark] == pytest.approx(math.exp(hand[mark] - lse), abs=1e-5)


def test_prefix_of_another_mark_is_told_apart(resolver, image):
    # "1" and "12" share a first token; the eos makes P("1") != P("1" then anything).
    res = resolver.score(image, [1, 12], QUERY)
    h1, _ = hand_log_likelihood(resolver, image, [1, 12], QUERY, 1)
    h12, _ = hand_log_likelihood(resolver, image, [1, 12], QUERY, 12)
    assert res.log_likelihoods[1] == pytest.approx(h1, abs=1e-4)
    assert res.log_likelihoods[12] == pytest.approx(h12, abs=1e-4)


def test_cached_prefix_equals_full_forward(loaded, image):
    fresh = Resolver(loaded, frame_cache_size=0)
    full = fresh.score(image, MARKS, QUERY)  # one pass, nothing cached
    assert fresh._frames == {}
    cached = Resolver(loaded)
    frame = cached.encode_frame(image, MARKS)
    assert frame.prefix_len == len(cached.prefix_ids(cached.template.frame_text(MARKS)))
    first = cached.score_frame(frame, [QUERY])[0]
    again = cached.score_frame(frame, ['the lamp', QUERY])[1]  # cache restored after each use
    for mark in MARKS:
        assert first.log_likelihoods[mark] == pytest.approx(full.log_likelihoods[mark], abs=1e-4)
        assert again.log_likelihoods[mark] == pytest.approx(full.log_likelihoods[mark], abs=1e-4)
        assert first.scores[mark] == pytest.approx(full.scores[mark], abs=1e-5)
    assert all(k.shape[-2] == frame.prefix_len for k, _ in frame.snapshot)


def test_new_frame_pass_leaves_its_cache_for_follow_ups(resolver, image):
    res = resolver.score(image, MARKS, QUERY)
    assert len(resolver._frames) == 1
    frame = next(iter(resolver._frames.values()))
    assert resolver.encode_frame(image, MARKS) is frame  # same pixels + marks: reused
    follow = resolver.score(image, MARKS, QUERY)
    for mark in MARKS:
        assert follow.scores[mark] == pytest.approx(res.scores[mark], abs=1e-5)
    other = image.copy()
    other[0, 0] ^= 1
    resolver.score(other, MARKS, QUERY)
    assert len(resolver._frames) == 1 and frame.key not in resolver._frames  # LRU of 1


def test_batched_queries_equal_single_queries(loaded, image):
    queries = [QUERY, 'the mug on the shelf', 'the second lamp from the right']
    batch = Resolver(loaded).score_batch(image, MARKS, queries)
    for q, res in zip(queries, batch):
        single = Resolver(loaded, frame_cache_size=0).score(image, MARKS, q)
        assert res.query == q
        for mark in MARKS:
            assert res.scores[mark] == pytest.approx(single.scores[mark], abs=1e-5)


def test_tree_mask_sees_only_ancestors():
    tree = build_tree([[5, 6], [7]], [[1, 9], [2, 9]])
    mask = tree_mask(tree)
    # tokens: q0(5,6) c0(1,9) c1(2,9) q1(7) c0(1,9) c1(2,9)
    assert tree.ids.tolist() == [5, 6, 1, 9, 2, 9, 7, 1, 9, 2, 9]
    assert mask[5].nonzero()[:, 0].tolist() == [0, 1, 4, 5]  # c1 of q0: its query + itself
    assert mask[6].nonzero()[:, 0].tolist() == [6]  # q1 does not see q0
    assert tree.depth.tolist() == [0, 1, 2, 3, 2, 3, 0, 1, 2, 1, 2]
    assert tree.logit_pos.tolist() == [1, 2, 1, 4, 6, 7, 6, 9]


def test_abstains_below_threshold(loaded, image):
    res = Resolver(loaded, abstain_threshold=0.99).score(image, MARKS, QUERY)
    assert res.abstained and res.best_id is None
    assert res.ranked[0][1] == res.confidence < 0.99
    assert '0.990' in res.reason and f'{len(MARKS)} marks' in res.reason


def test_single_mark_is_certain(resolver, image):
    res = resolver.score(image, [4], QUERY)
    assert res.scores == {4: pytest.approx(1.0)} and res.best_id == 4


def test_landscape_image_is_padded_not_cropped(resolver):
    img = np.full((10, 30, 3), 200, dtype=np.uint8)
    sq = pad_to_square(img, (1, 2, 3))
    assert sq.shape == (30, 30, 3)
    assert (sq[10:20] == 200).all() and (sq[:10] == [1, 2, 3]).all()
    pv = pixel_values(resolver.loaded.processor.image_processor, img)
    size = resolver.model.config.vision_config.image_size
    assert pv.shape == (1, 3, size, size)


@pytest.mark.parametrize(
    ('image_arg', 'marks', 'query', 'match'),
    [
        (np.zeros((8, 8, 3), np.float32), [1], QUERY, 'uint8'),
        (np.zeros((8, 8), np.uint8), [1], QUERY, r'\(8, 8\)'),
        ([[0, 0, 0]], [1], QUERY, 'numpy'),
        (np.zeros((0, 8, 3), np.uint8), [1], QUERY, 'empty'),
        (np.zeros((8, 8, 3), np.uint8), [], QUERY, '0 mark ids'),
        (np.zeros((8, 8, 3), np.uint8), [0, 2], QUERY, r'>= 1, got \[0\]'),
        (np.zeros((8, 8, 3), np.uint8), [3, 3, 4], QUERY, r'duplicate mark ids \[3\]'),
        (np.zeros((8, 8, 3), np.uint8), ['a'], QUERY, 'integers'),
        (np.zeros((8, 8, 3), np.uint8), [1], '   ', 'non-empty'),
    ],
)
def test_bad_inputs_raise_input_error(resolver, image_arg, marks, query, match):
    with pytest.raises(InputError, match=match):
        resolver.score(image_arg, marks, query)


def test_other_input_errors(loaded, resolver, image):
    with pytest.raises(InputError, match='0 given'):
        resolver.score_batch(image, MARKS, [])
    frame = resolver.encode_frame(image, MARKS)
    with pytest.raises(InputError, match='0 given'):
        resolver.score_frame(frame, [])
    with pytest.raises(InputError, match='got one string'):
        resolver.score_frame(frame, QUERY)
    with pytest.raises(InputError, match='1.5'):
        Resolver(loaded, abstain_threshold=1.5)
    with pytest.raises(InputError, match='max_new_tokens must be >= 1, got 0'):
        resolver.answer(image, 'describe mark 2', max_new_tokens=0)


def test_prefix_without_one_image_token_is_a_resolve_error(resolver):
    with pytest.raises(ResolveError, match='found 2'):
        resolver.prefix_ids('USER: <image> <image> marks')


def test_answer_generates_text(resolver, image):
    text = resolver.answer(image, 'describe the region of mark 2', max_new_tokens=6)
    assert isinstance(text, str) and text
    again = resolver.answer(image, 'describe the region of mark 2', max_new_tokens=6)
    assert again == text  # greedy by default
    inputs = resolver.generate_inputs(image, 'describe the region of mark 2')
    with torch.no_grad():
        out = resolver.model.generate(**inputs, max_new_tokens=1, do_sample=False)
    first = resolver.tokenizer.decode(out[0, -1:], skip_special_tokens=True).strip()
    assert text.startswith(first)


def test_template_is_loaded_from_config_and_validated(tmp_path):
    tpl = PromptTemplate.load()
    assert '<image>' in tpl.frame_prefix and 'USER:' in tpl.frame_prefix
    assert tpl.query_text('the lamp').endswith('ASSISTANT:')
    assert tpl.frame_text([1, 12]).count('1, 12') == 1
    bad = tmp_path / 'bad.yaml'
    bad.write_text('system: s\nframe_prefix: "<image> {marks}"\nquery: "no placeholder"\n')
    with pytest.raises(InputError, match='must contain {query}'):
        PromptTemplate.load(bad)
    bad.write_text('system: s\nframe_prefix: "<image>"\nquery: "{query}"\ncolour: red\n')
    with pytest.raises(InputError, match=r"unknown keys \['colour'\]"):
        PromptTemplate.load(bad)
    with pytest.raises(InputError, match='cannot read'):
        PromptTemplate.load(tmp_path / 'missing.yaml')
    with pytest.raises(InputError, match='<image>'):
        PromptTemplate(system='s', frame_prefix='no image {marks}', query='{query}')


def test_custom_template_changes_the_prompt(loaded, image):
    tpl = PromptTemplate(
        system='robot',
        frame_prefix='{system} USER: <image> marks {marks}.',
        query=' where is {query}? ASSISTANT:',
        answer=' mark {mark}',
    )
    r = Resolver(loaded, template=tpl)
    assert r.tokenizer.convert_ids_to_tokens(r.answer_ids(12)) == ['mark', '1', '2', '</s>']
    res = r.score(image, [1, 12], QUERY)
    assert sum(res.scores.values()) == pytest.approx(1.0, abs=1e-6)


def test_at_word_template_scores_exactly_with_an_empty_tail(loaded, image):
    """config/prompt_at_word.yaml: no mark list, the answer right after the query's last word
    (nothing between them): the cached score equals a plain HF forward of the same tokens."""
    from spatial_llava_ros.paths import config_path

    tpl = PromptTemplate.load(config_path('prompt_at_word.yaml'))
    assert tpl.query_tail() == '' and '{marks}' not in tpl.frame_prefix
    r = Resolver(loaded, template=tpl)
    assert r.tokenizer.convert_ids_to_tokens(r.answer_ids(12)) == ['1', '2', '</s>']
    res = r.score(image, MARKS, QUERY)
    for mark in MARKS:
        hand, _ = hand_log_likelihood(r, image, MARKS, QUERY, mark)
        assert res.log_likelihoods[mark] == pytest.approx(hand, abs=1e-4)


def test_torch_preprocessing_matches_the_processor(loaded):
    img = np.random.default_rng(4).integers(0, 256, (60, 90, 3), dtype=np.uint8)
    img[:, :45] = 30  # flat areas and edges
    exact = Resolver(loaded).pixel_values(img)
    fast = Resolver(loaded, preprocess='torch').pixel_values(img)
    assert fast.shape == exact.shape
    std = min(loaded.processor.image_processor.image_std)
    diff = (fast - exact).abs()
    assert float(diff.mean()) < 1.0 / 255 / std  # about one grey level on average
    assert float(diff.max()) < 8.0 / 255 / std
    res = Resolver(loaded, preprocess='torch').score(img, MARKS, QUERY)
    ref = Resolver(loaded).score(img, MARKS, QUERY)
    for mark in MARKS:
        assert res.scores[mark] == pytest.approx(ref.scores[mark], abs=1e-2)
    with pytest.raises(InputError, match="'gpu'"):
        Resolver(loaded, preprocess='gpu')
