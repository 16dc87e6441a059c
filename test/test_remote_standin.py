"""The remote resolver against stand-in servers on 127.0.0.1, for what no real server here does.

Test doubles, and why: vLLM cannot run on this machine (it needs a GPU build), so its
``prompt_logprobs`` path is tested against a small HTTP server that answers in vLLM's
documented ChatCompletionResponse shape (``prompt_logprobs``: one ``{token_id: {logprob,
rank, decoded_token}}`` per prompt token, ``null`` first; ``prompt_token_ids``). Its numbers
are not made up: it renders the request with the checkpoint's real chat template and
processor and runs the real tiny LLaVA forward pass. The fault servers (HTTP 503, a body
that is not JSON, a slow answer, an answer that is not a mark) stand in for failures that
``transformers serve`` cannot be made to produce on demand.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import torch

pytest.importorskip('openai', reason="the remote resolver needs the 'serve' extra")

from spatial_llava_ros.model.remote import (  # noqa: E402
    BAD_ANSWER,
    SERVER_ERROR,
    SERVER_TIMEOUT,
    RemoteConfig,
    RemoteError,
    RemoteResolver,
)
from spatial_llava_ros.model.resolver import Resolver  # noqa: E402
from spatial_llava_ros.model.tiny import make_tiny_model  # noqa: E402

TOL = 1e-4


class StandIn:
    """A ThreadingHTTPServer whose answers come from ``respond(path, body) -> (status, bytes)``."""

    def __init__(self, respond) -> None:
        self.respond = respond
        self.requests: list[tuple[str, dict]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):  # noqa: N802 - http.server's name
                n = int(self.headers.get('Content-Length', 0))
                body = json.loads(self.rfile.read(n) or b'{}')
                outer.requests.append((self.path, body))
                status, data = outer.respond(self.path, body)
                self.send_response(status)
                self.send_header('Content-Type', 'application/json')
                self.send_header('Content-Length', str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f'http://127.0.0.1:{self.httpd.server_address[1]}'

    def __enter__(self) -> StandIn:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def chat_json(content: str = '', n_prompt: int = 10, **extra) -> bytes:
    return json.dumps({
        'id': 'chatcmpl-1', 'object': 'chat.completion', 'created': 0, 'model': 'm',
        'choices': [{'index': 0, 'message': {'role': 'assistant', 'content': content},
                     'logprobs': None, 'finish_reason': 'stop'}],
        'usage': {'prompt_tokens': n_prompt, 'completion_tokens': 1,
                  'total_tokens': n_prompt + 1}, **extra}).encode()


NOT_FOUND = (404, b'{"detail": "Not Found"}')


class VllmShaped:
    """Chat completions with ``prompt_logprobs`` in vLLM's shape, computed by the real model."""

    def __init__(self, loaded) -> None:
        self.loaded = loaded

    def __call__(self, path: str, body: dict):
        if path != '/v1/chat/completions':
            return NOT_FOUND
        processor, model = self.loaded.processor, self.loaded.model
        messages = []
        for m in body['messages']:
            content = m['content']
            if isinstance(content, str):
                content = [{'type': 'text', 'text': content}]
            blocks = [{'type': 'image', 'url': c['image_url']['url']} if c['type'] == 'image_url'
                      else {'type': 'text', 'text': c['text']} for c in content]
            messages.append({'role': m['role'], 'content': blocks})
        inputs = processor.apply_chat_template(
            messages, add_generation_prompt=body.get('add_generation_prompt', True),
            tokenize=True, return_dict=True, return_tensors='pt')
        ids = inputs['input_ids'][0].tolist()
        with torch.inference_mode():
            logits = model(**inputs).logits[0].float()
        logp = torch.log_softmax(logits, -1)
        plp = [None] + [{str(t): {'logprob': float(logp[i - 1, t]), 'rank': 1,
                                  'decoded_token': processor.tokenizer.decode([t])}}
                        for i, t in enumerate(ids) if i > 0]
        extra = {'prompt_logprobs': plp}
        if body.get('return_token_ids'):
            extra['prompt_token_ids'] = ids
        return 200, chat_json('1', len(ids), **extra)


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    torch.set_num_threads(1)
    path = make_tiny_model(tmp_path_factory.mktemp('tiny') / 'm', max_positions=2048)
    return Resolver.from_pretrained(path, device='cpu', dtype='float32')


def frame(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (48, 64, 3), dtype=np.uint8)


def test_vllm_prompt_logprobs_score_multi_digit_marks_exactly(tiny):
    marks = [1, 3, 12, 21]  # 12 and 21 share no first token; 1 and 12 do
    queries = ['the red chair', 'the lamp left of the sofa']
    lines = []
    with StandIn(VllmShaped(tiny.loaded)) as srv:
        r = RemoteResolver(RemoteConfig(srv.url, server_model='m', timeout=60.0),
                           on_log=lines.append)
        got = r.score_batch(frame(), marks, queries)
        paths = [p for p, _ in srv.requests]
    want = tiny.score_batch(frame(), marks, queries)
    for g, w in zip(got, want):
        assert g.scoring == 'logprobs' and g.probabilities
        for m in marks:
            assert abs(g.scores[m] - w.scores[m]) < TOL, (m, g.scores, w.scores)
            assert abs(g.log_likelihoods[m] - w.log_likelihoods[m]) < 1e-3
    # marks 12 and 21 are two tokens, so /v1/systemone is not tried; logprobs is probed once:
    # one base request + one per mark, per query
    assert paths.count('/v1/systemone') == 0
    assert paths.count('/v1/chat/completions') == len(queries) * (1 + len(marks))
    assert any('prompt_logprobs' in line for line in lines), lines
    r.close()


def test_generation_uses_structured_choice_where_the_server_takes_it():
    seen = []

    def respond(path, body):
        if path != '/v1/chat/completions' or 'prompt_logprobs' in (body or {}):
            return NOT_FOUND if path != '/v1/chat/completions' else (
                400, b'{"error": "unknown field"}')
        seen.append(body.get('structured_outputs'))
        return 200, chat_json('12')

    with StandIn(respond) as srv:
        r = RemoteResolver(RemoteConfig(srv.url, server_model='m', timeout=10.0))
        res = r.score(frame(), [3, 12], 'the chair')
    assert res.best_id == 12 and res.scoring == 'generate' and not res.probabilities
    assert seen == [{'choice': ['3', '12']}]
    r.close()


@pytest.mark.parametrize('answer', ['mark 42', 'the chair, obviously', ''])
def test_answer_that_is_not_a_mark_in_view_is_bad_answer(answer):
    with StandIn(lambda p, b: (200, chat_json(answer))) as srv:
        r = RemoteResolver(RemoteConfig(srv.url, server_model='m', timeout=10.0,
                                        scoring='generate'))
        with pytest.raises(RemoteError) as exc:
            r.score(frame(), [1, 2, 3], 'the chair')
    assert exc.value.code == BAD_ANSWER and '[1, 2, 3]' in str(exc.value)
    r.close()


def test_malformed_body_is_bad_answer():
    with StandIn(lambda p, b: (200, b'{"choices": [ this is not json')) as srv:
        r = RemoteResolver(RemoteConfig(srv.url, server_model='m', timeout=10.0,
                                        scoring='generate'))
        with pytest.raises(RemoteError) as exc:
            r.score(frame(), [1, 2], 'the chair')
    assert exc.value.code == BAD_ANSWER, str(exc.value)
    r.close()


def test_5xx_is_retried_then_server_error_with_the_status():
    with StandIn(lambda p, b: (503, b'{"error": "overloaded"}')) as srv:
        r = RemoteResolver(RemoteConfig(srv.url, server_model='m', timeout=10.0, retries=2,
                                        scoring='generate'))
        with pytest.raises(RemoteError) as exc:
            r.score(frame(), [1, 2], 'the chair')
        n = len(srv.requests)
    assert exc.value.code == SERVER_ERROR
    assert 'HTTP 503' in str(exc.value) and 'after 3 tries' in str(exc.value)
    assert n == 3
    r.close()


def test_a_transient_5xx_is_retried_and_answered():
    calls = []

    def respond(path, body):
        calls.append(path)
        return (500, b'{}') if len(calls) == 1 else (200, chat_json('2'))

    with StandIn(respond) as srv:
        r = RemoteResolver(RemoteConfig(srv.url, server_model='m', timeout=10.0,
                                        scoring='generate'))
        res = r.score(frame(), [1, 2], 'the chair')
    assert res.best_id == 2 and len(calls) == 2
    r.close()


def test_slow_server_past_the_deadline_is_a_timeout_and_the_next_query_is_answered():
    delay = {'s': 3.0}

    def respond(path, body):
        time.sleep(delay['s'])
        return 200, chat_json('1')

    with StandIn(respond) as srv:
        r = RemoteResolver(RemoteConfig(srv.url, server_model='m', timeout=1.0,
                                        scoring='generate'))
        with pytest.raises(RemoteError) as exc:
            r.score(frame(), [1, 2], 'the chair')
        assert exc.value.code == SERVER_TIMEOUT and 'deadline 1 s' in str(exc.value)
        delay['s'] = 0.0
        assert r.score(frame(), [1, 2], 'the chair').best_id == 1
    r.close()


def test_max_in_flight_bounds_concurrent_requests():
    state = {'now': 0, 'most': 0}
    lock = threading.Lock()

    def respond(path, body):
        with lock:
            state['now'] += 1
            state['most'] = max(state['most'], state['now'])
        time.sleep(0.05)
        with lock:
            state['now'] -= 1
        return 200, chat_json('1')

    with StandIn(respond) as srv:
        r = RemoteResolver(RemoteConfig(srv.url, server_model='m', timeout=30.0,
                                        scoring='generate', max_in_flight=2))
        res = r.score_batch(frame(), [1, 2], [f'query {i}' for i in range(8)])
    assert [x.best_id for x in res] == [1] * 8
    assert state['most'] == 2
    r.close()


def test_api_key_comes_from_the_named_environment_variable(monkeypatch):
    keys = []

    def respond(path, body):
        return 200, chat_json('1')

    with StandIn(respond) as srv:
        handler = srv.httpd.RequestHandlerClass
        orig = handler.do_POST

        def do_post(self):
            keys.append(self.headers.get('Authorization'))
            orig(self)

        handler.do_POST = do_post
        monkeypatch.setenv('ROBOT_FLEET_KEY', 'sk-test-123')
        cfg = RemoteConfig(srv.url, server_model='m', api_key_env='ROBOT_FLEET_KEY',
                           scoring='generate')
        r = RemoteResolver(cfg)
        r.score(frame(), [1, 2], 'the chair')
        assert 'sk-test-123' not in r.describe() and 'sk-test-123' not in repr(cfg)
    assert keys == ['Bearer sk-test-123']
    monkeypatch.delenv('ROBOT_FLEET_KEY')
    with pytest.raises(Exception, match='ROBOT_FLEET_KEY'):
        RemoteResolver(cfg)
    r.close()
