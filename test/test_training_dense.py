"""Dense per-patch targets, multi-task packing and the two-stage (vision-only, then full) run
that trains the shipped model, on a tiny model and a few synthetic scenes."""

import json

import numpy as np
import pytest
import torch

from spatial_llava_ros.errors import InputError
from spatial_llava_ros.model.prompt import PromptTemplate
from spatial_llava_ros.training.config import TrainConfig
from spatial_llava_ros.training.dense import (
    HEAD_NAMES,
    HEADS,
    IGNORE,
    DenseHeads,
    dense_targets,
    object_features,
    patch_grid,
)
from spatial_llava_ros.training.synthetic import SomSettings, marked_scene, training_frame

TINY = {'image_size': 32, 'patch_size': 8, 'vision_hidden': 32, 'vision_layers': 1,
        'vision_feature_layer': -1, 'text_hidden': 32, 'text_layers': 1, 'heads': 2}
DATA = {'train_seeds': '7000:7004', 'val_seeds': '7100:7102', 'scene_width': 160,
        'scene_height': 120, 'text_height_336': 30.0, 'queries_per_frame': 4,
        'free_per_frame': 2, 'vsr_frames': 1, 'vsr_per_frame': 3}
SETTINGS = SomSettings(320, 240, 40.0, 'number', 'depth')


def config(out, **kw) -> TrainConfig:
    raw = {'output_dir': str(out), 'model': dict(TINY), 'data': dict(DATA), 'steps': 2,
           'batch_size': 2, 'lr': 1e-2, 'warmup_steps': 1, 'log_every': 1, 'eval_every': 2,
           'save_every': 1, 'threads': 1, 'dense_weight': 1.0}
    raw.update(kw)
    return TrainConfig.from_dict(raw)


def test_patch_grid_follows_the_padded_square():
    # 4 rows x 8 cols frame -> padded to 8x8 (2 rows of padding on top), grid 4: cell = 2 px
    img = np.zeros((4, 8), np.int64)
    img[1, 5] = 7  # frame row 1 = square row 3 -> grid row 1; col 5 -> grid col 2
    grid = patch_grid(img, 4).reshape(4, 4)
    assert grid[1, 2] == 7
    assert grid[0].tolist() == [0, 0, 0, 0] and grid[3].tolist() == [0, 0, 0, 0]  # padding


def _labelled_scene():
    """Scene 100019 marked by the engine, with each mark's label rectangle."""
    from spatial_llava_ros.marks.placement import label_rect, label_style

    ms = marked_scene(100019, SETTINGS, keep=True)
    h, w = ms.marked.image.shape[:2]
    style = label_style(h, w, SETTINGS.text_height_336)
    rects = {m.mark_id: label_rect(m.anchor, str(m.mark_id), style, (h, w))
             for m in ms.marked.marks}
    return ms, rects


def test_dense_targets_name_the_drawn_number_and_the_object_under_each_patch():
    from spatial_llava_ros.scene import catalog

    ms, rects = _labelled_scene()
    scene, marked = ms.scene, ms.marked
    h, w = marked.image.shape[:2]
    grid = 16
    t = dense_targets(scene, marked, grid, rects)
    assert t.marked.shape == (len(HEADS), grid * grid)
    label = t.marked[HEAD_NAMES.index('label')]
    side = max(h, w)
    top = (side - h) // 2
    cell = side / grid
    for m in marked.marks:
        x0, y0, x1, y1 = rects[m.mark_id]
        u, v = (x0 + x1) / 2, (y0 + y1) / 2  # the label's centre patch names the mark
        assert label[int((v + top) // cell) * grid + int(u // cell)] == m.mark_id
    assert t.plain[HEAD_NAMES.index('label')].max() == 0  # the unmarked frame has no numbers
    cat = t.marked[HEAD_NAMES.index('category')]
    inst = patch_grid(scene.frame.instance_mask.astype(np.int64), grid)
    objects = {o.instance_id: o for o in scene.objects}
    for p in np.flatnonzero(inst):
        assert cat[p] == list(catalog.CATEGORIES).index(objects[int(inst[p])].category) + 1
    assert (cat[inst == 0] == 0).all()
    assert (t.marked[HEAD_NAMES.index('rank_left')][inst == 0] == IGNORE).all()


def test_label_patches_can_carry_their_objects_features():
    from spatial_llava_ros.scene import catalog

    ms, rects = _labelled_scene()
    scene, marked = ms.scene, ms.marked
    objects = {mark: inst for inst, mark in ms.marks_of.items()}
    plain = dense_targets(scene, marked, 16, rects)
    carried = dense_targets(scene, marked, 16, rects, objects)
    label = carried.marked[HEAD_NAMES.index('label')]
    cat = carried.marked[HEAD_NAMES.index('category')]
    by_id = {o.instance_id: o for o in scene.objects}
    changed = 0
    for mark, inst in objects.items():
        at = label == mark
        want = list(catalog.CATEGORIES).index(by_id[inst].category) + 1
        assert at.any() and (cat[at] == want).all()
        changed += int((plain.marked[HEAD_NAMES.index('category')][at] != want).sum())
    assert changed > 0  # without label_objects some label patches show another object
    off = label == 0
    assert (carried.marked[:, off] == plain.marked[:, off]).all()
    assert (carried.plain == plain.plain).all()


def test_ranks_order_objects_of_a_category():
    from spatial_llava_ros.scene.expressions import object_views

    scene = marked_scene(100019, SETTINGS, keep=True).scene
    feats = object_features(scene)
    views = object_views(scene.objects, scene.frame.camera_pose)
    by_cat: dict = {}
    for v in views:
        by_cat.setdefault(v.obj.category, []).append(v)
    group = max(by_cat.values(), key=len)
    assert len(group) >= 2
    leftmost = min(group, key=lambda v: v.x)
    nearest = min(group, key=lambda v: v.dist)
    assert feats[leftmost.id]['rank_left'] == 0
    assert feats[nearest.id]['rank_near'] == 0
    assert sorted(feats[v.id]['rank_left'] for v in group) == list(range(min(len(group), 5)))


def test_dense_heads_learn_fixed_targets():
    torch.manual_seed(0)
    heads = DenseHeads(16)
    feats = torch.randn(2, 9, 16)
    targets = torch.zeros(2, len(HEADS), 9, dtype=torch.int16)
    targets[:, HEAD_NAMES.index('label'), 4] = 3
    opt = torch.optim.Adam(heads.parameters(), lr=0.05)
    first = None
    for _ in range(40):
        loss, acc = heads.loss(feats, targets)
        first = first if first is not None else float(loss.detach())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss) < 0.2 * first
    assert acc['label_fg'] == 1.0


def test_multitask_branches_score_exactly_like_the_resolver(tmp_path):
    from spatial_llava_ros.model.loading import load_model
    from spatial_llava_ros.model.resolver import Resolver
    from spatial_llava_ros.model.tiny import make_tiny_model
    from spatial_llava_ros.training.packing import Packer, branch_logprobs
    from spatial_llava_ros.training.trainer import multitask_example

    template = PromptTemplate.load()
    d = make_tiny_model(tmp_path / 'm', image_size=32, patch_size=8)
    resolver = Resolver(load_model(d, device='cpu'))
    f = training_frame(7000, SomSettings(160, 120, 30.0), 16, 4, dense=False, free=True)
    query = f.queries[0][0]
    ex = multitask_example(f.image, f.mark_ids, [(query, m) for m in f.mark_ids], f.free[:1],
                           template)
    loaded = resolver.loaded
    packer = Packer(loaded.tokenizer, loaded.image_token_id,
                    loaded.model.config.image_seq_length, loaded.processor.image_processor)
    ours = branch_logprobs(loaded.model, packer, ex)
    res = resolver.score(f.image, f.mark_ids, query)
    assert ours[:len(f.mark_ids)] == pytest.approx(
        [res.log_likelihoods[m] for m in f.mark_ids], abs=1e-3)


def test_vision_only_stage_then_full_stage_export_a_plain_llava(tmp_path):
    from transformers import LlavaForConditionalGeneration

    from spatial_llava_ros.model.resolver import Resolver
    from spatial_llava_ros.training.trainer import train

    s1 = train(config(tmp_path / 's1', vision_only=True), progress=False)
    log1 = [json.loads(x) for x in (tmp_path / 's1' / 'train_log.jsonl').read_text().split('\n')
            if x]
    assert 'val_dense_label_fg' in log1[-1] and 'val_answer_acc' not in log1[-1]
    heads = tmp_path / 's1' / 'dense_heads.pt'
    assert heads.is_file()
    s2 = train(config(tmp_path / 's2', model={'base_path': str(s1.final_dir)},
                      dense_heads_from=str(heads)), progress=False)
    log2 = [json.loads(x) for x in (tmp_path / 's2' / 'train_log.jsonl').read_text().split('\n')
            if x]
    assert 'val_answer_acc' in log2[-1] and 'dense_loss' in log2[0]
    model = LlavaForConditionalGeneration.from_pretrained(s2.final_dir)
    assert not any('dense' in k for k in model.state_dict())  # the heads stay in the trainer
    f = marked_scene(7100, SomSettings(160, 120, 30.0))
    res = Resolver.from_pretrained(s2.final_dir, device='cpu').score(f.image, f.mark_ids,
                                                                     f.queries[0][0])
    assert sum(res.scores.values()) == pytest.approx(1.0, abs=1e-4)


def test_head_weights_scale_each_heads_share_of_the_loss(tmp_path):
    """dense_head_weights {label: 4}: the label head's loss counts 4x; defaults are the plain
    mean; an unknown head is a config error that names the known ones."""
    torch.manual_seed(0)
    feats = torch.randn(2, 9, 16)
    targets = torch.zeros(2, len(HEADS), 9, dtype=torch.int16)
    targets[:, HEAD_NAMES.index('label'), 4] = 3
    plain, weighted = DenseHeads(16), DenseHeads(16, {'label': 4.0})
    weighted.load_state_dict(plain.state_dict())
    only_label = DenseHeads(16, {n: 0.0 for n in HEAD_NAMES if n != 'label'})
    only_label.load_state_dict(plain.state_dict())
    base, w, lab = (float(h.loss(feats, targets)[0]) for h in (plain, weighted, only_label))
    n = len(HEAD_NAMES)
    label_part = lab  # the label head's own loss (all others weigh 0)
    assert w == pytest.approx((base * n + 3 * label_part) / (n + 3), rel=1e-5)
    with pytest.raises(InputError, match='dense_head_weights'):
        config(tmp_path, dense_weight=1.0, dense_head_weights={'digits': 2.0})


def test_vision_only_needs_the_dense_heads(tmp_path):
    with pytest.raises(InputError, match='vision_only needs dense_weight'):
        config(tmp_path, vision_only=True, dense_weight=0.0)
