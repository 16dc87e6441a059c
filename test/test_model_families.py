"""LLaVA-NeXT, Qwen2-VL, Qwen2.5-VL and Idefics3 on their tiny random checkpoints (CPU).

Every reference number comes from plain transformers: AutoModelForImageTextToText, the
checkpoint's own processor and chat template, and the model's own forward (its own position
ids, M-RoPE included), never from the resolver's code.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from needs import needs

from spatial_llava_ros.errors import InputError, ModelLoadError
from spatial_llava_ros.model.chat_resolver import ChatResolver
from spatial_llava_ros.model.families import FAMILIES, load_processor
from spatial_llava_ros.model.loading import load_model
from spatial_llava_ros.model.resolver import Resolver
from spatial_llava_ros.model.tiny_families import make_family_model

NEW = ['llava_next', 'qwen2_vl', 'qwen2_5_vl', 'idefics3']
MARKS = [1, 2, 3, 12, 37]
QUERY = 'the chair left of the table'


@pytest.fixture(scope='module', params=NEW)
def ckpt(request, tmp_path_factory):
    torch.set_num_threads(1)
    fam = request.param
    path = make_family_model(tmp_path_factory.mktemp(fam) / 'ckpt', fam, seed=5,
                             split_images=False)
    return fam, path, load_model(path, device='cpu')


@pytest.fixture(scope='module')
def image():
    return np.random.default_rng(2).integers(0, 256, (48, 64, 3), dtype=np.uint8)


def images_arg(fam, image):
    return [[image]] if fam == 'idefics3' else [image]


def plain_token_probs(fam, loaded, text: str, image, answer: list[int]) -> list[float]:
    """P(each answer token) from a plain forward over processor(text) + answer tokens."""
    enc = loaded.processor(text=[text], images=images_arg(fam, image), return_tensors='pt')
    n = enc['input_ids'].shape[1]
    ids = torch.cat([enc['input_ids'], torch.tensor([answer])], dim=1)
    kw = {k: v for k, v in enc.items() if k not in ('input_ids', 'attention_mask')}
    if 'mm_token_type_ids' in kw:
        kw['mm_token_type_ids'] = torch.cat(
            [kw['mm_token_type_ids'], torch.zeros(1, len(answer), dtype=torch.long)], dim=1)
    with torch.no_grad():
        logits = loaded.model(input_ids=ids, attention_mask=torch.ones_like(ids), **kw).logits[0]
    probs = torch.softmax(logits.double(), dim=-1)
    return [float(probs[n + j - 1, tok]) for j, tok in enumerate(answer)]


def test_round_trip_through_plain_transformers(ckpt, image, tmp_path):
    from transformers import AutoModelForImageTextToText

    fam, path, loaded = ckpt
    assert type(loaded.model).__name__ == FAMILIES[fam].architecture
    model = AutoModelForImageTextToText.from_pretrained(path, local_files_only=True)
    model.save_pretrained(tmp_path)
    again = AutoModelForImageTextToText.from_pretrained(tmp_path, local_files_only=True)
    a, b = model.state_dict(), again.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    proc = load_processor(path, FAMILIES[fam])
    text = ChatResolver(loaded).chat.question_text('where is the mug?')
    enc = proc(text=[text], images=images_arg(fam, image), return_tensors='pt')
    kw = {k: v for k, v in enc.items()}
    with torch.no_grad():
        assert torch.equal(model(**kw).logits, again(**kw).logits)


def test_prompt_is_the_familys_own_chat_template(ckpt):
    fam, _, loaded = ckpt
    r = Resolver(loaded)
    assert isinstance(r, ChatResolver)
    t = r.template
    messages = [
        {'role': 'system', 'content': [{'type': 'text', 'text': t.system}]},
        {'role': 'user', 'content': [
            {'type': 'image'},
            {'type': 'text', 'text': t.chat_frame.format(marks='1, 2, 3, 12, 37')
             + t.chat_query.format(query=QUERY)}]},
    ]
    want = loaded.processor.apply_chat_template(messages, add_generation_prompt=True,
                                                tokenize=False)
    assert r.chat.frame_text(MARKS) + r.chat.query_text(QUERY) == want
    # the answer is the digits then the template's end of turn, one token per digit
    end = r.tokenizer.convert_ids_to_tokens([r.answer_ids(12)[-1]])[0]
    assert end in r.chat.end_text and len(r.answer_ids(12)) == len(r.answer_ids(1)) + 1


def test_scores_sum_to_one_over_present_marks(ckpt, image):
    _, _, loaded = ckpt
    res = Resolver(loaded).score(image, MARKS, QUERY)
    assert sorted(res.scores) == MARKS
    assert math.isclose(sum(res.scores.values()), 1.0, abs_tol=1e-5)
    assert res.best_id == res.ranked[0][0] and res.confidence == max(res.scores.values())


def test_multi_digit_scores_equal_product_of_plain_forward_token_probs(ckpt, image):
    fam, _, loaded = ckpt
    r = Resolver(loaded)
    res = r.score(image, MARKS, QUERY)
    text = r.chat.frame_text(MARKS) + r.chat.query_text(QUERY)
    for mark in MARKS:
        probs = plain_token_probs(fam, loaded, text, image, r.answer_ids(mark))
        assert len(probs) == len(str(mark)) + 1
        assert math.isclose(res.log_likelihoods[mark], math.log(math.prod(probs)),
                            rel_tol=1e-4, abs_tol=1e-4), (fam, mark)


def test_cached_prefix_equals_full_forward(ckpt, image):
    _, _, loaded = ckpt
    full = Resolver(loaded, frame_cache_size=0)
    full.one_pass = True  # prefix + tree in ONE forward under a 4D mask
    one_pass = full.score(image, MARKS, QUERY)
    two_pass = Resolver(loaded, frame_cache_size=0).score(image, MARKS, QUERY)  # the default
    r = Resolver(loaded)
    frame = r.encode_frame(image, MARKS)
    assert frame.image_tokens == r.image_tokens(image) and frame.position_base <= frame.prefix_len
    cached = r.score_frame(frame, [QUERY])[0]
    again = r.score_frame(frame, [QUERY])[0]  # the cache is restored after each query
    for m in MARKS:
        assert math.isclose(cached.log_likelihoods[m], one_pass.log_likelihoods[m], abs_tol=1e-4)
        assert math.isclose(two_pass.log_likelihoods[m], one_pass.log_likelihoods[m],
                            abs_tol=1e-4)
        assert math.isclose(again.log_likelihoods[m], cached.log_likelihoods[m], abs_tol=1e-6)


def test_batched_equals_single(ckpt, image):
    _, _, loaded = ckpt
    queries = [QUERY, 'the red mug', 'the lamp nearest to the sofa']
    batched = Resolver(loaded, frame_cache_size=0).score_batch(image, MARKS, queries)
    for q, b in zip(queries, batched):
        single = Resolver(loaded, frame_cache_size=0).score(image, MARKS, q)
        for m in MARKS:
            assert math.isclose(b.log_likelihoods[m], single.log_likelihoods[m], abs_tol=1e-4)


def test_generate_path_answers(ckpt, image):
    _, _, loaded = ckpt
    text = Resolver(loaded).answer(image, 'which mark is the chair?', max_new_tokens=3)
    assert isinstance(text, str)


def test_error_paths(ckpt, image, tmp_path):
    fam, path, loaded = ckpt
    with pytest.raises(InputError, match='LLaVA-1.5'):
        Resolver(loaded, vision=object())
    with pytest.raises(InputError, match='processor'):
        Resolver(loaded, preprocess='torch')
    r = Resolver(loaded)
    token = loaded.processor.image_token
    with pytest.raises(InputError, match='image token'):
        r.score(image, MARKS, f'the {token} chair')
    with pytest.raises(InputError, match='no marks'):
        r.score(image, [], QUERY)
    # a checkpoint whose tokenizer disagrees with its config about the image token
    cfg = json.loads((path / 'config.json').read_text())
    broken = tmp_path / 'broken'
    broken.mkdir()
    for f in path.iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    key = 'image_token_index' if 'image_token_index' in cfg else 'image_token_id'
    cfg[key] = cfg[key] + 1
    (broken / 'config.json').write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError, match='config says'):
        load_model(broken, device='cpu')


def test_unsupported_architecture_names_the_supported_ones(tmp_path):
    (tmp_path / 'config.json').write_text(json.dumps({'model_type': 'paligemma',
                                                      'architectures': ['PaliGemma']}))
    with pytest.raises(ModelLoadError) as err:
        load_model(tmp_path, device='cpu')
    msg = str(err.value)
    assert 'paligemma' in msg
    for name in ('llava', 'llava_next', 'qwen2_vl', 'qwen2_5_vl', 'idefics3'):
        assert name in msg


@needs('peft')
def test_two_step_lora_training_output_loads_in_the_resolver(ckpt, image, tmp_path):
    from spatial_llava_ros.training.config import TrainConfig
    from spatial_llava_ros.training.trainer import train

    fam, path, loaded = ckpt
    cfg = TrainConfig.from_dict({
        'output_dir': str(tmp_path / 'run'), 'model': {'base_path': str(path)},
        'data': {'train_seeds': '7000:7002', 'val_seeds': '', 'scene_width': 160,
                 'scene_height': 120, 'text_height_336': 30.0},
        'lm': 'lora', 'vision': 'frozen', 'lora_r': 4, 'steps': 2, 'batch_size': 1,
        'lr': 5e-2, 'warmup_steps': 1, 'threads': 1,
    })
    result = train(cfg, progress=False)
    assert result.steps == 2 and len(result.history) == 2
    trained = load_model(result.final_dir, device='cpu')
    assert trained.family == fam
    assert not any('lora' in n for n, _ in trained.model.named_parameters())
    base_sd, new_sd = loaded.model.state_dict(), trained.model.state_dict()
    assert base_sd.keys() == new_sd.keys()
    changed = [k for k in base_sd if not torch.equal(base_sd[k], new_sd[k])]
    assert changed and all(('language_model' in k or 'text_model' in k) for k in changed)
    res = Resolver.from_pretrained(result.final_dir, device='cpu').score(image, MARKS, QUERY)
    assert math.isclose(sum(res.scores.values()), 1.0, abs_tol=1e-5)


@needs('peft')  # train_family imports peft before it checks the config
def test_lora_training_refuses_full_fine_tuning_of_a_newer_family(ckpt, tmp_path):
    from spatial_llava_ros.training.config import TrainConfig
    from spatial_llava_ros.training.trainer import train

    _, path, _ = ckpt
    cfg = TrainConfig.from_dict({'output_dir': str(tmp_path), 'model': {'base_path': str(path)},
                                 'lm': 'full', 'steps': 1})
    with pytest.raises(InputError, match='LoRA'):
        train(cfg, progress=False)
