"""Checkpoints written by the package carry the LLaVA-1.5 chat template servers need.

The template must render, through the checkpoint's own processor (as ``transformers
serve`` and vLLM do), exactly the tokens the local resolver scores: the same prompt on
both paths is what makes remote probabilities comparable to local ones.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from spatial_llava_ros.model.chat_template import (
    CHAT_TEMPLATE_FILE,
    DECISION_CONFIG_FILE,
    DECISION_TEMPLATE_FILE,
    ensure_chat_template,
)
from spatial_llava_ros.model.loading import load_model
from spatial_llava_ros.model.remote import chat_pieces
from spatial_llava_ros.model.resolver import Resolver
from spatial_llava_ros.model.tiny import make_tiny_model
from spatial_llava_ros.paths import model_dir


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp('tiny') / 'm')


@pytest.mark.parametrize('which', ['tiny', 'shipped'])
def test_checkpoint_has_the_templates(tiny, which):
    path = tiny if which == 'tiny' else model_dir(None)
    for name in (CHAT_TEMPLATE_FILE, DECISION_CONFIG_FILE, DECISION_TEMPLATE_FILE):
        assert (path / name).is_file(), f'{path} lacks {name}'
    labels = json.loads((path / DECISION_CONFIG_FILE).read_text())['labels']['choice']
    assert labels == [str(d) for d in range(1, 10)]


def test_chat_template_renders_the_local_prompt_token_for_token(tiny):
    loaded = load_model(tiny, device='cpu')
    resolver = Resolver(loaded)
    image = np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8)
    marks, query = (1, 3, 12), 'the chair left of the table'
    system, text = chat_pieces(resolver.template, marks, query)
    messages = [{'role': 'system', 'content': [{'type': 'text', 'text': system}]},
                {'role': 'user', 'content': [{'type': 'image', 'image': image},
                                             {'type': 'text', 'text': text}]}]
    got = loaded.processor.apply_chat_template(messages, add_generation_prompt=True,
                                               tokenize=True, return_dict=True)
    tpl = resolver.template
    want = resolver.prefix_ids(tpl.frame_text(list(marks)) + tpl.query_text(query))
    assert list(got['input_ids'][0]) == want
    # an assistant turn ends with </s>: the logprobs path scores "12" + </s> like the local one
    with_answer = loaded.processor.apply_chat_template(
        messages + [{'role': 'assistant', 'content': [{'type': 'text', 'text': '12'}]}],
        tokenize=True, return_dict=True)
    tail = list(with_answer['input_ids'][0])[len(want):]
    assert tail == resolver.answer_ids(12)


def test_ensure_keeps_a_checkpoints_own_chat_template(tiny, tmp_path):
    import shutil

    own = tmp_path / 'own'
    shutil.copytree(tiny, own)
    (own / CHAT_TEMPLATE_FILE).write_text('{{ messages }}')
    written = ensure_chat_template(own)
    assert (own / CHAT_TEMPLATE_FILE).read_text() == '{{ messages }}'
    assert own / CHAT_TEMPLATE_FILE not in written
    assert ensure_chat_template(tiny) == []  # already there: nothing rewritten
    with pytest.raises(FileNotFoundError):
        ensure_chat_template(tmp_path / 'nothing')
