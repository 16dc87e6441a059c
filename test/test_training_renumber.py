"""Renumbered marks (training/renumber.py): the trainer redraws a frame with its numbers
shuffled, and the image, the dense targets and the answers must all agree on the new ids."""

import random

import numpy as np
import pytest

from spatial_llava_ros.errors import InputError
from spatial_llava_ros.marks.placement import label_style
from spatial_llava_ros.model.prompt import PromptTemplate
from spatial_llava_ros.training.dense import HEAD_NAMES
from spatial_llava_ros.training.renumber import renumbered_frame, shuffled_ids
from spatial_llava_ros.training.synthetic import SomSettings, marked_scene, training_frame
from spatial_llava_ros.training.trainer import FramePool

SETTINGS = SomSettings(320, 240, 40.0, 'number', 'depth')


@pytest.fixture(scope='module')
def frame():
    return training_frame(100019, SETTINGS, 40, 16, dense=True, free=False)


def test_redrawing_with_the_same_numbers_is_the_engines_image(frame):
    style = label_style(*frame.image.shape[:2], SETTINGS.text_height_336)
    same = {m: m for m in frame.mark_ids}
    image, dense = renumbered_frame(frame.rgb, frame.anchors, frame.dense, same, style)
    assert np.array_equal(image, frame.image)
    assert np.array_equal(dense, frame.dense.marked)


def test_shuffled_numbers_move_with_their_labels(frame):
    style = label_style(*frame.image.shape[:2], SETTINGS.text_height_336)
    new = shuffled_ids(frame.mark_ids, random.Random(3))
    assert sorted(new.values()) == sorted(frame.mark_ids) and new != {m: m for m in new}
    image, dense = renumbered_frame(frame.rgb, frame.anchors, frame.dense, new, style)
    assert not np.array_equal(image, frame.image)
    for name in ('label', 'mark'):
        old, now = (d[HEAD_NAMES.index(name)] for d in (frame.dense.marked, dense))
        for m, n in new.items():
            assert ((old == m) == (now == n)).all()
        assert ((old <= 0) == (now <= 0)).all()
    for name in ('category', 'color', 'rank_left'):
        row = HEAD_NAMES.index(name)
        assert np.array_equal(dense[row], frame.dense.marked[row])


def test_frame_pool_answers_follow_the_redrawn_numbers(frame):
    seen, template = [], PromptTemplate.load()
    pool = FramePool([frame], [], template, 4, renumber=1.0,
                     pixels=lambda img: seen.append(img) or img)
    ex = pool.batch(0, 1, seed=0)[0]
    assert len(seen) == 1 and ex.pixel_values is seen[0] and ex.image is seen[0]
    label = ex.dense[HEAD_NAMES.index('label')].numpy()
    for branch in ex.branches:  # the answer's number is drawn where the target's label was
        query, answer = branch[0].text, int(branch[1].text)
        old = next(m for t, m, _ in frame.queries if template.query_text(t) == query)
        at = frame.dense.marked[HEAD_NAMES.index('label')] == old
        assert at.any() and (label[at] == answer).all()


def test_renumbering_needs_the_unmarked_frames():
    plain = marked_scene(7000, SomSettings(160, 120, 30.0))  # no rgb kept
    with pytest.raises(InputError, match='renumber_marks needs the unmarked frames'):
        FramePool([plain], [], PromptTemplate.load(), 4, renumber=0.5, pixels=lambda i: i)


@pytest.mark.parametrize('vision_only', [True, False])
def test_a_run_with_renumbered_marks_trains(tmp_path, vision_only):
    from spatial_llava_ros.training.config import TrainConfig
    from spatial_llava_ros.training.trainer import train

    cfg = TrainConfig.from_dict({
        'output_dir': str(tmp_path), 'steps': 2, 'batch_size': 2, 'lr': 1e-2,
        'warmup_steps': 1, 'log_every': 1, 'eval_every': 2, 'save_every': 2, 'threads': 1,
        'dense_weight': 1.0, 'vision_only': vision_only,
        'model': {'image_size': 32, 'patch_size': 8, 'vision_hidden': 32, 'vision_layers': 1,
                  'vision_feature_layer': -1, 'text_hidden': 32, 'text_layers': 1, 'heads': 2},
        'data': {'train_seeds': '7000:7003', 'val_seeds': '7100:7101', 'scene_width': 160,
                 'scene_height': 120, 'text_height_336': 30.0, 'queries_per_frame': 4,
                 'renumber_marks': 1.0, 'label_features': vision_only}})
    result = train(cfg, progress=False)
    assert (result.final_dir / 'config.json').is_file()
