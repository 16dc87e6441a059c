"""Property tests: hostile queries, frames and settings through the core entry points.

The real parts: a rendered synthetic scene, the marks engine, a tiny random Spatial-LLaVA
checkpoint written and loaded through ``load_model``, and ``pipeline.resolve_query``.
``resolve_query`` must return a SpatialOutcome for ANY query (failures as data: success
False, a known code, a one-line reason); the lower-level calls must return or raise a
typed ``SpatialLlavaError``. Queries include empty, whitespace, very long, non-ASCII,
control characters and prompt-template breakers ("{", "}", "{query}", "<image>", "</s>").
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from test_property_inputs import FLOATS, outcome_of  # shared helpers

from spatial_llava_ros.camera_types import CameraIntrinsics
from spatial_llava_ros.errors import InputError, SpatialLlavaError
from spatial_llava_ros.pipeline import (
    ACTION_NAMES,
    BAD_QUERY,
    FAILURE_CODES,
    FrameRecord,
    MarkInfo,
    PipelineConfig,
    QueryRequest,
    TransformTable,
    resolve_query,
)

torch = pytest.importorskip('torch')

FAST = settings(max_examples=40, deadline=None,
                suppress_health_check=[HealthCheck.too_slow,
                                       HealthCheck.function_scoped_fixture])
BREAKERS = ['{', '}', '{}', '{query}', '{system}', '{0}', '{mark}', '<image>', '<image><image>',
            '</s>', '<s>', '<unk>', '<pad>', 'USER:', 'ASSISTANT:', '\x00', '\x1b[2J', '\r\n',
            '\u202e', '\ufeff', '\U0001f600', '%s', '\\n', 'é', '椅子', "'); DROP TABLE--"]
QUERIES = (st.text(max_size=80)
           | st.lists(st.sampled_from(BREAKERS + ['the', 'chair', 'left', 'of', ' ']),
                      max_size=12).map(''.join)
           | st.sampled_from(['', ' ', '\n\t', 'chair ' * 800, 'x' * 20000,
                              'the chair left of the table']))


@pytest.fixture(scope='module')
def resolver(tmp_path_factory):
    torch.set_num_threads(1)
    from spatial_llava_ros.model.resolver import Resolver
    from spatial_llava_ros.model.tiny import make_tiny_model

    path = make_tiny_model(tmp_path_factory.mktemp('tiny'), seed=0)
    return Resolver.from_pretrained(path, device='cpu')


@pytest.fixture(scope='module')
def scene():
    from spatial_llava_ros.marks.engine import mark_frame
    from spatial_llava_ros.scene.generate import generate_scene

    frame = generate_scene(3, 160, 120).frame
    marked = mark_frame(frame.rgb, frame.depth, frame.intrinsics, stamp_ns=frame.stamp_ns)
    assert marked.marks, 'the scene must give marks for the pipeline to reach the model'
    assert all(m.centroid is not None for m in marked.marks), 'every mark needs depth here'
    tf = TransformTable()
    tf.add('map', 'camera_optical', frame.camera_pose)
    record = FrameRecord.from_marked_frame(marked, 'camera_optical')
    return frame, marked, record, tf


CONFIG = PipelineConfig(base_frame='', max_frame_age=0.0)


def check_outcome(out, query: str) -> None:
    assert out.query == query
    if out.success:
        assert out.code == '' and out.goal is not None
        assert np.all(np.isfinite(out.goal.position))
        assert abs(sum(p for _, p in out.ranked) - 1.0) < 1e-4
    else:
        assert out.code in FAILURE_CODES, out.code
        assert out.reason.startswith(out.code + ': ') and '\n' not in out.reason.strip()


def _usable(query: str) -> bool:
    """Queries the resolver must answer: non-empty, no image token, a few hundred chars."""
    return bool(query.strip()) and '<image>' not in query and len(query) <= 400


def _refusable(query: str, reason: str) -> bool:
    """The two refusals by design: the image token, and more tokens than the context."""
    return ('<image>' in query and 'image token' in reason) or \
        (len(query) > 400 and 'tokens; the model context of' in reason)


@FAST
@given(query=QUERIES, action=st.integers(-2, 4))
def test_any_query_gets_an_outcome(resolver, scene, query, action):
    _, _, record, tf = scene
    out, err = outcome_of(resolve_query, QueryRequest(query, action), record, resolver, tf,
                          CONFIG, now_ns=record.stamp_ns)
    assert err is None, f'resolve_query raised {err!r}; it must return failures as data'
    check_outcome(out, query)
    if not query.strip() or action not in ACTION_NAMES:
        assert out.code == BAD_QUERY
    elif _usable(query):
        assert out.success, out.reason  # a usable query on a good frame is answered
    elif not out.success:  # only what the resolver refuses by design
        assert out.code == BAD_QUERY and _refusable(query, out.reason), out.reason


@FAST
@given(query=QUERIES)
def test_resolver_score_on_any_query(resolver, scene, query):
    _, marked, record, _ = scene
    res, err = outcome_of(resolver.score, marked.image, record.mark_ids, query)
    if err is not None:
        assert isinstance(err, InputError)
        assert not query.strip() or _refusable(query, str(err)), err
        return
    assert set(res.scores) == set(record.mark_ids)
    assert all(math.isfinite(p) for p in res.scores.values())


IMAGES = hnp.arrays(st.sampled_from([np.uint8, np.uint16, np.float32, np.int8, np.bool_]),
                    hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=24))
MARK_IDS = st.lists(st.integers(-3, 10**6), max_size=12) | st.sampled_from(
    [[], [0], [1, 1], [1, 2, 3], list(range(1, 41)), ['a'], [1.5, 2]])


@FAST
@given(image=IMAGES, mark_ids=MARK_IDS)
def test_resolver_score_on_any_image_and_marks(resolver, image, mark_ids):
    res, err = outcome_of(resolver.score, image, mark_ids, 'the chair left of the table')
    if err is None:
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        assert abs(sum(res.scores.values()) - 1.0) < 1e-4


INTRINSIC = st.floats(-1e6, 1e6) | st.sampled_from(
    [0.0, -0.0, -1.0, 1e-100, 0.5, math.nan, math.inf, -math.inf])


@FAST
@given(rgb=hnp.arrays(np.uint8, st.tuples(st.integers(1, 40), st.integers(1, 40),
                                          st.sampled_from([1, 3, 4]))),
       depth_values=st.floats(allow_nan=True, allow_infinity=True, width=32),
       noise=st.booleans(),
       k=st.tuples(*[INTRINSIC] * 4) | st.none(),
       size_delta=st.sampled_from([0, 0, 1, -1]))
def test_mark_engine_on_hostile_frames(rgb, depth_values, noise, k, size_delta):
    from spatial_llava_ros.marks.engine import MarkEngine

    h, w = rgb.shape[:2]
    if rgb.shape[2] == 1:
        rgb = rgb[:, :, 0]
    depth = np.full((h + size_delta, max(1, w)), depth_values, np.float32)
    if noise:
        depth = depth + np.random.default_rng(0).normal(0, 1, depth.shape).astype(np.float32)
    intr = None if k is None else CameraIntrinsics(k[0], k[1], k[2], k[3], w, h)
    marked, err = outcome_of(MarkEngine().process, rgb, depth, intr, stamp_ns=1)
    if err is None:
        assert marked.image.shape == (h, w, 3) and marked.image.dtype == np.uint8
        for m in marked.marks:
            assert m.centroid is None or np.all(np.isfinite(m.centroid))


@FAST
@given(centroid=st.tuples(FLOATS, FLOATS, FLOATS) | st.none(),
       translation=st.tuples(FLOATS, FLOATS, FLOATS),
       standoff=FLOATS, age=FLOATS, action=st.sampled_from(sorted(ACTION_NAMES)))
def test_pipeline_geometry_on_hostile_numbers(resolver, scene, centroid, translation,
                                              standoff, age, action):
    _, marked, record, _ = scene
    config, err = outcome_of(PipelineConfig, base_frame='', standoff=standoff,
                             max_frame_age=age)
    if err is not None:
        return
    pose = np.eye(4)
    pose[:3, 3] = translation
    tf = TransformTable()
    _, tf_err = outcome_of(tf.add, 'map', 'camera_optical', pose)
    c = None if centroid is None else np.asarray(centroid, dtype=np.float64)
    marks = [MarkInfo(m.mark_id, m.box, centroid=c) for m in marked.marks]
    frame = FrameRecord(record.stamp_ns, 'camera_optical', marked.image, marks)
    out, err = outcome_of(resolve_query, QueryRequest('the chair', action), frame, resolver,
                          tf, config, now_ns=record.stamp_ns)
    assert err is None, f'resolve_query raised {err!r}'
    check_outcome(out, 'the chair')
    if out.success:
        assert tf_err is None and c is not None and np.all(np.isfinite(c))


def test_tiny_focal_length_is_input_error():
    """A positive but tiny focal length once overflowed the depth segmenter (LinAlgError)."""
    from spatial_llava_ros.marks.engine import MarkEngine

    intr = CameraIntrinsics(1.0, 1e-100, 0.0, 0.0, 8, 8)
    with pytest.raises(InputError):
        MarkEngine().process(np.zeros((8, 8), np.uint8), np.ones((8, 8), np.float32), intr)


def test_query_longer_than_the_context_is_input_error(resolver, scene):
    """A 4,000-word query would overrun the model's positions (1,024 tiny, 4,096 for 7B):
    refused with the token count instead of scored past the context."""
    _, marked, record, _ = scene
    query = 'the chair left of the table ' * 670
    with pytest.raises(InputError, match='tokens; the model context of'):
        resolver.score(marked.image, record.mark_ids, query)
    assert resolver.score(marked.image, record.mark_ids, 'the chair').best_id in record.mark_ids


def test_image_token_in_query_is_input_error(resolver, scene):
    """'<image>' typed in a query would become an image placeholder with no features."""
    _, marked, record, _ = scene
    with pytest.raises(InputError, match='image token'):
        resolver.score(marked.image, record.mark_ids, 'the <image> chair')
    with pytest.raises(SpatialLlavaError):
        resolver.answer(np.zeros((8, 8, 3), np.uint8), 'what is <image> here?')
