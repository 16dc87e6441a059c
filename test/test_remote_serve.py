"""The remote resolver against a real ``transformers serve`` process on 127.0.0.1.

The server serves the model shipped in the package, as it is (its chat and decision
templates come from ``model/chat_template.py``). It is started on a free port by the module
fixture and killed at the end; one test kills it mid-run and starts it again.

Tolerance: /v1/systemone probabilities equal the local resolver's within 1e-4 (absolute),
float32 on CPU; the two runs differ only in how the forward pass is batched (a plain causal
pass on the server, the token tree locally). /v1/systemone reads the answer's first token,
so it is compared with the local resolver scoring that token too (``score_eos: false``).
"""

from __future__ import annotations

import dataclasses
import re
import socket
import threading
import time

import numpy as np
import pytest
import torch
from serve_helpers import ServeProcess, free_port, serve_missing

from spatial_llava_ros.model.prompt import PromptTemplate
from spatial_llava_ros.model.remote import (
    BAD_ANSWER,
    SERVER_TIMEOUT,
    SERVER_UNREACHABLE,
    RemoteConfig,
    RemoteError,
    RemoteResolver,
    parse_mark,
)
from spatial_llava_ros.model.resolver import Resolver
from spatial_llava_ros.paths import model_dir
from spatial_llava_ros.pipeline import FrameRecord, MarkInfo, QueryRequest
from spatial_llava_ros.reliability.service import QueryService
from spatial_llava_ros.training.synthetic import SomSettings, marked_scene

pytestmark = pytest.mark.skipif(serve_missing() is not None, reason=str(serve_missing()))
TOL = 1e-4


@pytest.fixture(scope='module')
def shipped():
    return model_dir(None)


@pytest.fixture(scope='module')
def server(shipped, tmp_path_factory):
    torch.set_num_threads(1)
    log = tmp_path_factory.mktemp('serve') / 'serve.log'
    proc = ServeProcess(shipped, log_path=log).start()
    yield proc
    proc.stop()


@pytest.fixture(scope='module')
def local(shipped):
    return Resolver.from_pretrained(shipped, device='cpu', dtype='float32')


@pytest.fixture(scope='module')
def frames(shipped):
    """Marked synthetic scenes: (image, mark ids, up to 2 queries); the first ones have marks
    1-9 only (what /v1/systemone scores), the last has a two-digit mark."""
    settings = SomSettings.for_model(shipped)
    small, big = [], []
    for seed in range(200):
        ms = marked_scene(seed, settings, max_expressions=3)
        if not ms.queries:
            continue
        item = (ms.image, ms.mark_ids, [q for q, _, _ in ms.queries][:2])
        if max(ms.mark_ids) <= 9 and len(small) < 2:
            small.append(item)
        elif max(ms.mark_ids) >= 10 and not big:
            big.append(item)
        if len(small) == 2 and big:
            break
    assert len(small) == 2 and big, 'no synthetic scenes with the mark counts needed'
    return small + big


def remote(server, shipped, **kw) -> RemoteResolver:
    kw.setdefault('timeout', 120.0)
    lines = []
    r = RemoteResolver(RemoteConfig(server.url, server_model=str(shipped), **kw),
                       on_log=lines.append)
    r.lines = lines
    return r


def local_greedy_mark(local: Resolver, image, marks, query) -> str:
    """The local model's greedy answer to the scoring prompt (what generation mode asks)."""
    tpl = local.template
    ids = local.prefix_ids(tpl.frame_text(list(marks)) + tpl.query_text(query))
    inp = torch.tensor([ids])
    out = local.model.generate(input_ids=inp, attention_mask=torch.ones_like(inp),
                               pixel_values=local.pixel_values(image), max_new_tokens=4,
                               do_sample=False, pad_token_id=local.tokenizer.pad_token_id)
    return local.tokenizer.decode(out[0, inp.shape[1]:], skip_special_tokens=True)


def test_systemone_probabilities_equal_local(server, shipped, local, frames):
    r = remote(server, shipped)
    first_token = Resolver(local.loaded, dataclasses.replace(local.template, score_eos=False))
    worst = 0.0
    for image, marks, queries in frames[:2]:
        got = r.score_batch(image, marks, queries)
        want = first_token.score_batch(image, marks, queries)
        for g, w in zip(got, want):
            assert g.scoring == 'systemone' and g.probabilities
            assert sorted(g.scores) == sorted(marks)
            for m in marks:
                worst = max(worst, abs(g.scores[m] - w.scores[m]))
            assert g.best_id == w.best_id
    assert worst < TOL, f'largest |p_remote - p_local| = {worst:.2e}'
    assert any('/v1/systemone' in line for line in r.lines), r.lines
    r.close()


def test_generation_mode_gives_the_local_greedy_mark(server, shipped, local, frames):
    """Chat completions on the shipped model (HTTP 500 before it had a chat template)."""
    r = remote(server, shipped, scoring='generate')
    for image, marks, queries in frames:
        for q in queries:
            text = local_greedy_mark(local, image, marks, q)
            try:
                want = parse_mark(text, tuple(marks))
            except RemoteError as exc:
                with pytest.raises(RemoteError) as got:
                    r.score(image, marks, q)
                assert got.value.code == exc.code == BAD_ANSWER
                continue
            res = r.score(image, marks, q)
            assert res.scoring == 'generate' and not res.probabilities
            assert res.best_id == want and np.isnan(res.confidence)
    r.close()


def test_two_digit_marks_skip_systemone_and_the_probe_is_logged(server, shipped, frames):
    image, marks, queries = frames[-1]
    r = remote(server, shipped)
    try:
        res = r.score(image, marks, queries[0])
    except RemoteError as exc:  # the model may answer with something that is not a mark
        assert exc.code == BAD_ANSWER
        res = None
    # transformers serve has no prompt_logprobs: the probe says so once, then generates
    assert any('logprobs not available' in line for line in r.lines), r.lines
    if res is not None:
        assert res.scoring == 'generate'
    n = len(r.lines)
    try:
        r.score(image, marks, queries[0])
    except RemoteError:
        pass
    assert not any('not available' in line for line in r.lines[n:]), 'probed twice'
    r.close()


def test_unknown_model_is_a_server_error_with_the_status(server, frames):
    image, marks, queries = frames[0]
    r = RemoteResolver(RemoteConfig(server.url, server_model='/no/such/model', timeout=60.0,
                                    scoring='generate'))
    with pytest.raises(RemoteError) as exc:
        r.score(image, marks, queries[0])
    assert exc.value.code in ('server_error',) and 'HTTP' in str(exc.value)
    r.close()


def test_server_down_is_unreachable_and_retries_stay_in_the_deadline():
    image, marks, queries = np.zeros((32, 32, 3), np.uint8), [1, 2], ['the chair']
    port = free_port()  # nothing listens there: connection refused
    r = RemoteResolver(RemoteConfig(f'http://127.0.0.1:{port}', server_model='m', timeout=2.0,
                                    retries=3))
    started = time.monotonic()
    with pytest.raises(RemoteError) as exc:
        r.score(image, marks, queries[0])
    elapsed = time.monotonic() - started
    assert exc.value.code == SERVER_UNREACHABLE
    tries = int(re.search(r'after (\d+) tries', str(exc.value)).group(1))
    # retried (at most retries + 1 tries), and stopped at the deadline: on a loaded machine a
    # refused connect can take most of a second, so fewer than 4 tries may fit in 2 s
    assert 2 <= tries <= 4, str(exc.value)
    assert elapsed < 2.0 + 1.0, f'{elapsed:.2f} s: the retries overran the 2 s deadline'
    r.close()


def test_socket_that_never_answers_is_a_timeout():
    """A real listening socket that accepts and never answers (a stalled server)."""
    sock = socket.socket()
    sock.bind(('127.0.0.1', 0))
    sock.listen(16)
    held = []
    stop = threading.Event()

    def accept():
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(sock.accept()[0])
            except OSError:
                pass

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        port = sock.getsockname()[1]
        r = RemoteResolver(RemoteConfig(f'http://127.0.0.1:{port}', server_model='m',
                                        timeout=1.5))
        image = np.zeros((32, 32, 3), np.uint8)
        started = time.monotonic()
        with pytest.raises(RemoteError) as exc:
            r.score(image, [1, 2], 'the chair')
        elapsed = time.monotonic() - started
        assert exc.value.code == SERVER_TIMEOUT, str(exc.value)
        assert '1.5 s' in str(exc.value)
        assert elapsed < 1.5 + 1.0, f'{elapsed:.2f} s: past the 1.5 s deadline'
        assert held, 'the stalled server never saw the connection'
        r.close()
    finally:
        stop.set()
        t.join(2)
        for c in held:
            c.close()
        sock.close()


def test_default_template_can_be_sent_as_chat():
    from spatial_llava_ros.model.remote import chat_pieces

    tpl = PromptTemplate.load()
    system, text = chat_pieces(tpl, (1, 12), 'the chair')
    rendered = f'{system} USER: <image>\n{text} ASSISTANT:'
    assert rendered == tpl.frame_text([1, 12]) + tpl.query_text('the chair')


def test_cli_resolve_and_eval_grounding_with_server(server, shipped, local, frames, tmp_path,
                                                   capsys):
    import json

    from PIL import Image

    from spatial_llava_ros.cli import main

    image, marks, queries = frames[0]
    Image.fromarray(image).save(tmp_path / 'marked.png')
    argv = ['resolve', '--image', str(tmp_path / 'marked.png'), '--marks',
            ','.join(map(str, marks)), '--query', queries[0], '--server', server.url,
            '--server-model', str(shipped), '--server-timeout', '120']
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out['scoring'] == 'systemone' and out['probabilities'] is True
    assert sorted(m for m, _ in out['ranked']) == sorted(marks)
    assert main(['eval', 'grounding', '--seeds', '0:2', '--out', str(tmp_path / 'g.json'),
                 '--no-plot', '--no-progress', '--server', server.url, '--server-model',
                 str(shipped), '--server-timeout', '120']) == 0
    report = json.loads((tmp_path / 'g.json').read_text())
    assert report['n_queries'] > 0 and report['model'] == str(shipped)


def test_server_killed_mid_run_every_query_answered_then_recovers(server, shipped, frames):
    """QueryService (the node's loop) over the real server, SIGKILLed mid-run, then restarted
    on the same port (last in this module: it restarts the module's server)."""
    image, marks, queries = frames[0]
    queries = queries * 2
    proc = server
    outcomes: dict[int, object] = {}
    lock = threading.Lock()

    def on_result(ticket, outcome, _latency):
        with lock:
            assert ticket not in outcomes, f'ticket {ticket} answered twice'
            outcomes[ticket] = outcome

    r = RemoteResolver(RemoteConfig(proc.url, server_model=str(shipped), timeout=20.0,
                                    retries=1))
    svc = QueryService(r, lambda *a: np.eye(4), queue_size=64, on_result=on_result,
                       clock_ns=lambda: 0)
    svc.add_frame(FrameRecord(0, 'camera', image,
                              [MarkInfo(m, (0, 0, 4, 4), centroid=np.array([0.0, 0.0, 1.0]))
                               for m in marks]))
    try:
        with svc:
            before = [svc.submit(QueryRequest(q)) for q in queries]
            assert svc.wait_idle(120)
            proc.kill()
            during = [svc.submit(QueryRequest(q)) for q in queries]
            assert svc.wait_idle(120)
            proc.start()
            after = [svc.submit(QueryRequest(q)) for q in queries]
            assert svc.wait_idle(120)
    finally:
        r.close()
    stats = svc.stats
    assert stats.submitted == len(before) + len(during) + len(after) == len(outcomes)
    assert stats.submitted == stats.answered + stats.dropped + stats.not_active \
        + stats.internal_errors
    assert stats.internal_errors == 0
    for t in before + after:
        assert outcomes[t].success or outcomes[t].code == BAD_ANSWER, outcomes[t].reason
    for t in during:
        assert outcomes[t].code == SERVER_UNREACHABLE, outcomes[t].reason
        assert 'after 2 tries' in outcomes[t].reason
