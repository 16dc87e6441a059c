"""Faults injected into the core serving path; each gives a clear result and the service
answers the next query.

- model directory missing / not LLaVA / corrupt JSON / truncated or garbage safetensors:
  ``ModelLoadError`` naming the path and the byte counts;
- CUDA out of memory: NO GPU EXISTS HERE, so the model's forward is patched to raise
  ``torch.OutOfMemoryError`` (the exception torch raises on a CUDA allocation failure) -
  a test double for the allocator, everything else is the real tiny model. The
  ``OomFallbackResolver`` must split the batch (same scores as unsplit), warn, and on a
  single query on the CPU give ``model_error`` and keep serving;
- camera stops publishing: ``stale_frame`` with the age; serving resumes with a new frame;
- tf missing: ``no_transform`` naming the frames; resumes when tf arrives;
- Nav2 rejected / aborted: the reason line (``nav_failure_reason``); the accept / result
  handling (``queries.nav2.send_nav_goal``) is in test_queries_nav2.py, and against the
  rclpy node in test_faults_ros.py;
- the worker thread raising (resolver bug, consumer bug): ``internal_error`` with the
  exception type, and the worker stays alive.
"""

# ruff: noqa: F811 - pytest fixtures imported from test_property_pipeline are arguments
from __future__ import annotations

import json
import shutil
import threading

import numpy as np
import pytest
from test_flood_core import Recorder
from test_property_pipeline import resolver, scene  # noqa: F401 - shared fixtures (pytest finds them here)

from spatial_llava_ros.errors import ModelLoadError, ResolveError
from spatial_llava_ros.pipeline import (
    MODEL_ERROR,
    NAVIGATE,
    NO_FRAME,
    NO_TRANSFORM,
    STALE_FRAME,
    FrameRecord,
    PipelineConfig,
    QueryRequest,
)
from spatial_llava_ros.queries.nav2 import nav_failure_reason
from spatial_llava_ros.reliability.oom import OomFallbackResolver, OomFallbackWarning
from spatial_llava_ros.reliability.replay import StampedTransforms
from spatial_llava_ros.reliability.service import INTERNAL, QueryService

torch = pytest.importorskip('torch')
OOM = getattr(torch, 'OutOfMemoryError', torch.cuda.OutOfMemoryError)
S = 1_000_000_000


def ask(service, rec, text='the chair', action=NAVIGATE):
    """Submit one query, wait for it, return its outcome."""
    ticket = service.submit(QueryRequest(text, action))
    assert service.wait_idle(60.0)
    (out,) = rec.by_ticket[ticket]
    return out


# ---- model directory ------------------------------------------------------------------------

@pytest.fixture(scope='module')
def model_dir(resolver):
    return resolver.loaded.path


def _copy(src, tmp_path):
    dst = tmp_path / 'model'
    shutil.copytree(src, dst)
    return dst


def test_missing_model_dir(tmp_path):
    from spatial_llava_ros.model.loading import load_model

    with pytest.raises(ModelLoadError, match='does not exist'):
        load_model(tmp_path / 'nowhere')


@pytest.mark.parametrize('cut', ['header', 'half', 'last_byte'])
def test_truncated_safetensors(model_dir, tmp_path, cut):
    from spatial_llava_ros.model.loading import load_model

    bad = _copy(model_dir, tmp_path)
    (weights,) = bad.glob('*.safetensors')
    data = weights.read_bytes()
    keep = {'header': 5, 'half': len(data) // 2, 'last_byte': len(data) - 1}[cut]
    weights.write_bytes(data[:keep])
    with pytest.raises(ModelLoadError, match=rf'truncated.*{keep}'):
        load_model(bad, device='cpu')


@pytest.mark.parametrize('damage', ['garbage_header', 'no_weights', 'bad_config_json',
                                    'not_llava'])
def test_corrupt_model_dir(model_dir, tmp_path, damage):
    from spatial_llava_ros.model.loading import load_model

    bad = _copy(model_dir, tmp_path)
    (weights,) = bad.glob('*.safetensors')
    if damage == 'garbage_header':
        data = bytearray(weights.read_bytes())
        data[8:40] = b'\xff' * 32  # inside the JSON header
        weights.write_bytes(bytes(data))
    elif damage == 'no_weights':
        weights.unlink()
    elif damage == 'bad_config_json':
        (bad / 'config.json').write_text('{"model_type": "llava",', encoding='utf-8')
    else:
        cfg = json.loads((bad / 'config.json').read_text(encoding='utf-8'))
        cfg['model_type'] = 'bert'
        (bad / 'config.json').write_text(json.dumps(cfg), encoding='utf-8')
    with pytest.raises(ModelLoadError, match=str(bad)):
        load_model(bad, device='cpu')


def test_failed_load_leaves_a_running_service_serving(model_dir, resolver, scene,
                                                      tmp_path):
    from spatial_llava_ros.model.resolver import Resolver

    rec = Recorder()
    _, _, record, tf = scene
    with QueryService(resolver, tf, PipelineConfig(base_frame='', max_frame_age=0.0),
                      on_result=rec) as service:
        service.add_frame(record)
        bad = _copy(model_dir, tmp_path)
        (weights,) = bad.glob('*.safetensors')
        weights.write_bytes(weights.read_bytes()[:100])
        with pytest.raises(ModelLoadError):  # e.g. a hot reload to a half-copied model
            Resolver.from_pretrained(bad, device='cpu')
        assert ask(service, rec).success


# ---- CUDA out of memory (test double: patched forward) --------------------------------------

class OomWhen:
    """Patch ``resolver.model.forward`` to raise torch.OutOfMemoryError when ``when(n_tokens)``.

    Stands in for the CUDA allocator failing (no GPU on this machine); restores on exit.
    """

    def __init__(self, resolver, when):
        self.resolver, self.when, self.raised = resolver, when, 0

    def __enter__(self):
        model = self.resolver.model
        self.original = model.forward

        def forward(*args, **kwargs):
            embeds = kwargs.get('inputs_embeds')
            if embeds is not None and self.when(int(embeds.shape[1])):
                self.raised += 1
                raise OOM('CUDA out of memory. Tried to allocate 2.00 GiB (test double)')
            return self.original(*args, **kwargs)

        model.forward = forward
        return self

    def __exit__(self, *exc):
        del self.resolver.model.forward  # back to the class method


def test_oom_on_a_batch_splits_it_and_keeps_the_scores(resolver, scene):
    _, marked, record, _ = scene
    queries = [f'the chair number {i}' for i in range(8)]
    resolver.forget_frames()
    reference = resolver.score_batch(marked.image, record.mark_ids, queries)
    resolver.forget_frames()
    from spatial_llava_ros.model.tree import build_tree

    frame_text = resolver.template.frame_text(record.mark_ids)
    ctx = (resolver._ids(frame_text), frame_text)
    answers = [resolver.answer_ids(m) for m in record.mark_ids]

    def tokens(qs):  # what score_batch feeds the model for these queries on a new frame
        tree = build_tree([resolver.query_ids(ctx, q) for q in qs], answers)
        return len(resolver.prefix_ids(frame_text)) + int(tree.ids.numel())

    single_len = max(tokens([q]) for q in queries)  # OOM above one query's worth
    assert tokens(queries[:2]) > single_len
    wrapped = OomFallbackResolver(resolver)
    with OomWhen(resolver, lambda n: n > single_len) as oom, \
            pytest.warns(OomFallbackWarning, match='retrying as batches of 4 and 4'):
        got = wrapped.score_batch(marked.image, record.mark_ids, queries)
    assert oom.raised >= 1
    assert [r.query for r in got] == queries
    for a, b in zip(got, reference):
        assert a.best_id == b.best_id
        assert np.allclose([a.scores[m] for m in record.mark_ids],
                           [b.scores[m] for m in record.mark_ids], atol=1e-5)
    assert any('out of memory scoring 8 queries on' in e for e in wrapped.events)


def test_oom_on_one_query_on_cpu_is_model_error_then_serves(resolver, scene):
    _, _, record, tf = scene
    rec = Recorder()
    wrapped = OomFallbackResolver(resolver)
    resolver.forget_frames()
    with QueryService(wrapped, tf, PipelineConfig(base_frame='', max_frame_age=0.0),
                      on_result=rec) as service:
        service.add_frame(record)
        with OomWhen(resolver, lambda n: True):
            out = ask(service, rec)
        assert out.code == MODEL_ERROR
        assert 'out of memory scoring 1 query' in out.reason and 'cpu' in out.reason
        assert ask(service, rec).success  # memory is back: served again
    with pytest.raises(ResolveError, match=f'on {len(record.mark_ids)} marks'):
        with OomWhen(resolver, lambda n: True):
            wrapped.score(record.image, record.mark_ids, 'the lamp')


def test_move_to_cpu_gives_float32_scores_equal_to_a_float32_model(model_dir, resolver,
                                                                    scene):
    """The CPU step of the fallback on a bf16 model (the CUDA default dtype); on this
    CPU-only machine the model already sits on the CPU, so this checks the dtype switch,
    the vision backend rebuild and the dropped KV caches, not a device copy."""
    from spatial_llava_ros.model.resolver import Resolver

    _, marked, record, _ = scene
    bf16 = Resolver.from_pretrained(model_dir, device='cpu', dtype='bf16')
    bf16.score(marked.image, record.mark_ids, 'the chair')
    assert bf16._frames
    wrapped = OomFallbackResolver(bf16)
    wrapped._move_to_cpu()
    assert bf16.dtype == torch.float32 and not bf16._frames
    assert next(bf16.model.parameters()).dtype == torch.float32
    assert bf16.vision.dtype == torch.float32
    resolver.forget_frames()
    a = bf16.score(marked.image, record.mark_ids, 'the chair left of the table')
    b = resolver.score(marked.image, record.mark_ids, 'the chair left of the table')
    # bf16 weights cast to fp32 differ from the fp32 originals by bf16 rounding only
    assert max(abs(a.scores[m] - b.scores[m]) for m in record.mark_ids) < 0.05


# ---- sensors, tf, Nav2 ------------------------------------------------------------------------

def test_camera_stops_publishing_gives_stale_frame_then_recovers(resolver, scene):
    _, marked, record, tf = scene
    now = [record.stamp_ns]
    rec = Recorder()
    config = PipelineConfig(base_frame='', max_frame_age=1.0)
    with QueryService(resolver, tf, config, on_result=rec, clock_ns=lambda: now[0]) as service:
        assert ask(service, rec).code == NO_FRAME
        service.add_frame(record)
        assert ask(service, rec).success
        now[0] += 5 * S + S // 4  # the camera went quiet 5.25 s ago
        out = ask(service, rec)
        assert out.code == STALE_FRAME and '5.25 s old' in out.reason and '1.00 s' in out.reason
        fresh = FrameRecord(now[0], record.frame_id, record.image, record.marks)
        service.add_frame(fresh)
        assert ask(service, rec).success


def test_tf_missing_gives_no_transform_then_recovers(resolver, scene):
    frame, _, record, _ = scene
    tf = StampedTransforms()
    rec = Recorder()
    with QueryService(resolver, tf, PipelineConfig(base_frame='', max_frame_age=0.0),
                      on_result=rec) as service:
        service.add_frame(record)
        out = ask(service, rec)
        assert out.code == NO_TRANSFORM and "'camera_optical'" in out.reason
        assert "'map'" in out.reason
        tf.add(record.stamp_ns, {('map', 'camera_optical'): frame.camera_pose})
        assert ask(service, rec).success


@pytest.mark.parametrize('status,code,msg,want', [
    (6, 104, 'no valid path', 'ABORTED (error_code 104: no valid path)'),
    (5, 0, '', 'CANCELED'),
    (0, 0, '', 'UNKNOWN'),
    (42, 0, '', 'status 42'),
])
def test_nav2_failure_reason_names_the_status(status, code, msg, want):
    line = nav_failure_reason(status, code, msg)
    assert line.startswith('nav_failed: ') and line.endswith(want)


# ---- the worker raising -----------------------------------------------------------------------

class Flaky:
    """A resolver that raises a non-typed exception on some queries (a bug, not bad input)."""

    def __init__(self, inner):
        self.inner = inner

    def score(self, image, mark_ids, query):
        if 'crash' in query:
            raise RuntimeError(f'boom on {query!r}')
        if 'index' in query:
            return type('R', (), {'best_id': 999, 'confidence': 1.0, 'abstained': False,
                                  'reason': '', 'scores': {999: 1.0}, 'ranked': [(999, 1.0)]})()
        return self.inner.score(image, mark_ids, query)


def test_worker_exception_is_internal_error_and_worker_lives(resolver, scene):
    _, _, record, tf = scene
    rec = Recorder()
    with QueryService(Flaky(resolver), tf, PipelineConfig(base_frame='', max_frame_age=0.0),
                      on_result=rec) as service:
        service.add_frame(record)
        for _ in range(3):
            out = ask(service, rec, 'crash now')
            assert out.code == INTERNAL and 'RuntimeError: boom' in out.reason
            assert ask(service, rec).success
        # a resolver naming a mark the frame does not have: pipeline raises ResolveError
        out = ask(service, rec, 'index out of range')
        assert not out.success and out.code in (INTERNAL, 'abstain', MODEL_ERROR)
        assert '999' in out.reason
        assert service.running and service.stats.internal_errors >= 3


def test_consumer_exception_does_not_kill_the_worker(resolver, scene):
    _, _, record, tf = scene
    seen = []
    lock = threading.Lock()

    def consumer(ticket, outcome, latency):
        with lock:
            seen.append(ticket)
        if ticket == 0:
            raise ValueError('publisher gone')

    with QueryService(resolver, tf, PipelineConfig(base_frame='', max_frame_age=0.0),
                      on_result=consumer) as service:
        service.add_frame(record)
        service.submit(QueryRequest('the chair', NAVIGATE))
        assert service.wait_idle(60.0)
        service.submit(QueryRequest('the lamp', NAVIGATE))
        assert service.wait_idle(60.0)
        assert seen == [0, 1] and service.running
        assert isinstance(service.last_error, ValueError)


# ---- a damaged recording (replay) -------------------------------------------------------------

@pytest.fixture(scope='module')
def truncated_bag(tmp_path_factory):
    from spatial_llava_ros.reliability.replay import synthetic_bag

    out = tmp_path_factory.mktemp('bag')
    synthetic_bag(out / 'good.mcap', n_frames=3, width=64, height=48)
    data = (out / 'good.mcap').read_bytes()
    bad = out / 'truncated.mcap'
    bad.write_bytes(data[: len(data) // 2])  # an interrupted copy / full disk while recording
    return bad




def test_truncated_bag_is_input_error(truncated_bag):
    from spatial_llava_ros.errors import InputError
    from spatial_llava_ros.scene.bag import read_bag

    with pytest.raises(InputError, match='truncated.mcap'):
        list(read_bag(truncated_bag))


def test_replay_cli_on_truncated_bag_exits_2(truncated_bag, capsys):
    from spatial_llava_ros.cli import main

    assert main(['replay', '--bag', str(truncated_bag), '--query', 'the chair']) == 2


def test_resolver_naming_an_absent_mark_is_a_failed_outcome(resolver, scene):
    from spatial_llava_ros.pipeline import resolve_query

    _, _, record, tf = scene
    out = resolve_query(QueryRequest('index out of range', NAVIGATE), record, Flaky(resolver),
                        tf, PipelineConfig(base_frame='', max_frame_age=0.0), record.stamp_ns)
    assert not out.success and '999' in out.reason
