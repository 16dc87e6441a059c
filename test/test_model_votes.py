"""Votes over renumbered frames (model/votes.py) on a real tiny checkpoint: the first
numbering is the engine's image, each vote is mapped back to the engine's ids, and eval,
the pipeline and the CLI take the vote count from the model or a flag."""

import json
import math

import numpy as np
import pytest

from spatial_llava_ros.cli import main
from spatial_llava_ros.errors import InputError
from spatial_llava_ros.marks import mark_frame
from spatial_llava_ros.model.resolver import Resolver
from spatial_llava_ros.model.tiny import make_tiny_model
from spatial_llava_ros.model.votes import (
    Renumberable,
    check_votes,
    numberings,
    score_with_votes,
)
from spatial_llava_ros.pipeline import FrameRecord, PipelineConfig
from spatial_llava_ros.scene.generate import generate_scene


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp('tiny'))


@pytest.fixture(scope='module')
def marked():
    f = generate_scene(1, 320, 240).frame
    return mark_frame(f.rgb, f.depth, f.intrinsics, text_height_336=40.0)


def test_numberings_start_with_the_engine_ids_and_are_fixed_per_frame():
    ids = [1, 2, 3, 4, 5, 6]
    a, b = numberings(ids, 5), numberings(ids, 5)
    assert a == b and a[0] == {m: m for m in ids}
    assert all(sorted(n.values()) == ids and sorted(n) == ids for n in a)
    assert len({tuple(n.values()) for n in a}) > 1


@pytest.mark.parametrize('bad', [0, -1, 65, 2.0, True, '3'])
def test_bad_vote_counts_are_input_errors(bad):
    with pytest.raises(InputError, match='votes'):
        check_votes(bad)
    with pytest.raises(InputError, match='votes'):
        PipelineConfig(renumber_votes=bad)


def test_identity_redraw_is_the_engine_image(marked):
    frame = Renumberable.from_marked(marked, 40.0)
    ids = [m.mark_id for m in marked.marks]
    assert len(ids) > 3
    assert np.array_equal(frame.image({m: m for m in ids}), marked.image)
    swapped = frame.image({**{m: m for m in ids}, ids[0]: ids[1], ids[1]: ids[0]})
    assert not np.array_equal(swapped, marked.image)


def test_votes_combine_each_numbering_mapped_back(tiny, marked):
    resolver = Resolver.from_pretrained(tiny)
    frame = Renumberable.from_marked(marked, 40.0)
    ids = [m.mark_id for m in marked.marks]
    queries = ['the chair left of the table', 'the red mug']
    one = score_with_votes(resolver, frame, ids, queries, 1)
    plain = resolver.score_batch(marked.image, ids, queries)
    for a, b in zip(one, plain):
        assert a.scores == pytest.approx(b.scores, rel=1e-5) and a.best_id == b.best_id
    three = score_with_votes(resolver, frame, ids, queries, 3)
    # by hand: the normalised product of the three numberings' probabilities, engine ids
    logs = [dict.fromkeys(ids, 0.0) for _ in queries]
    for new in numberings(ids, 3):
        for acc, res in zip(logs, resolver.score_batch(frame.image(new), ids, queries)):
            for m in ids:
                acc[m] += math.log(res.scores[new[m]])
    for res, acc in zip(three, logs):
        top = max(acc.values())
        norm = sum(math.exp(v - top) for v in acc.values())
        assert res.scores == pytest.approx({m: math.exp(v - top) / norm
                                            for m, v in acc.items()}, rel=1e-5)
        assert sum(res.scores.values()) == pytest.approx(1.0)
        assert res.scoring == 'votes:3' and res.best_id == res.ranked[0][0]


def test_a_mark_without_an_anchor_is_an_input_error(tiny, marked):
    frame = Renumberable.from_marked(marked, 40.0)
    ids = [m.mark_id for m in marked.marks] + [99]
    with pytest.raises(InputError, match='99'):
        score_with_votes(Resolver.from_pretrained(tiny), frame, ids, ['the lamp'], 2)


def test_frame_record_renumbers_only_numbers_alone(marked):
    assert FrameRecord.from_marked_frame(marked, 'cam').renumber is None
    rec = FrameRecord.from_marked_frame(marked, 'cam', marker={'style': 'number',
                                                               'text_height_336': 40.0})
    assert isinstance(rec.renumber, Renumberable)
    assert FrameRecord.from_marked_frame(marked, 'cam', marker={
        'style': 'contour', 'text_height_336': 40.0}).renumber is None


def test_eval_grounding_votes_flag_and_model_setting(tiny, tmp_path):
    out = tmp_path / 'g.json'
    assert main(['eval', 'grounding', '--seeds', '0:2', '--model', str(tiny), '--votes', '3',
                 '--out', str(out), '--no-progress', '--no-plot']) == 0
    report = json.loads(out.read_text())
    assert report['renumber_votes'] == 3 and report['n_queries'] > 0
    settings = json.loads((tiny / 'som_settings.json').read_text()) \
        if (tiny / 'som_settings.json').is_file() else {}
    (tiny / 'som_settings.json').write_text(json.dumps({**settings, 'renumber_votes': 2}))
    try:
        assert main(['eval', 'grounding', '--seeds', '0:1', '--model', str(tiny),
                     '--out', str(out), '--no-progress', '--no-plot']) == 0
        assert json.loads(out.read_text())['renumber_votes'] == 2
    finally:
        if settings:
            (tiny / 'som_settings.json').write_text(json.dumps(settings))
        else:
            (tiny / 'som_settings.json').unlink()


def test_eval_grounding_bad_votes_is_one_line(tiny, tmp_path, capsys):
    assert main(['eval', 'grounding', '--seeds', '0:1', '--model', str(tiny), '--votes', '0',
                 '--out', str(tmp_path / 'g.json'), '--no-progress']) != 0
    err = capsys.readouterr().err.strip()
    assert 'votes' in err and 'Traceback' not in err and len(err.splitlines()) == 1


def test_resolve_query_asks_under_the_configured_votes(tiny):
    from spatial_llava_ros.pipeline import LOCATE, QueryRequest, TransformTable, resolve_query
    from spatial_llava_ros.scene.bag import OPTICAL_FRAME, tf_chain

    scene = generate_scene(1, 320, 240)
    f = scene.frame
    marked = mark_frame(f.rgb, f.depth, f.intrinsics, text_height_336=40.0)
    marker = {'style': 'number', 'text_height_336': 40.0}
    rec = FrameRecord.from_marked_frame(marked, OPTICAL_FRAME, marker=marker)
    resolver = Resolver.from_pretrained(tiny)
    tf = TransformTable.from_edges(tf_chain(f.camera_pose))
    query = scene.expressions[0].text
    voted = score_with_votes(resolver, rec.renumber, rec.mark_ids, [query], 4)[0]
    out = resolve_query(QueryRequest(query, LOCATE), rec, resolver, tf,
                        PipelineConfig(renumber_votes=4, max_frame_age=0.0), now_ns=0)
    assert [m for m, _ in out.ranked] == [m for m, _ in voted.ranked]
    assert out.confidence == pytest.approx(voted.confidence, rel=1e-5)
    single = resolve_query(QueryRequest(query, LOCATE), rec, resolver, tf,
                           PipelineConfig(max_frame_age=0.0), now_ns=0)
    assert single.confidence == pytest.approx(
        resolver.score(marked.image, rec.mark_ids, query).confidence, rel=1e-5)
