"""Trainer: a 2-step run on a tiny model lowers the loss and saves what the resolver loads;
packing scores exactly like the resolver; resume; LoRA export; config errors."""

import json

import pytest
import torch
from needs import needs

from spatial_llava_ros.errors import InputError
from spatial_llava_ros.model.prompt import PromptTemplate
from spatial_llava_ros.training.config import TrainConfig, parse_seeds
from spatial_llava_ros.training.frames_cache import load_frames

TINY = {'image_size': 32, 'patch_size': 8, 'vision_hidden': 32, 'vision_layers': 1,
        'text_hidden': 32, 'text_layers': 1, 'heads': 2}
DATA = {'train_seeds': '7000:7004', 'val_seeds': '7100:7101', 'scene_width': 160,
        'scene_height': 120, 'text_height_336': 30.0, 'queries_per_frame': 4}


def tiny_config(out, **kw) -> TrainConfig:
    raw = {'output_dir': str(out), 'model': dict(TINY), 'data': dict(DATA), 'steps': 2,
           'batch_size': 4, 'lr': 1e-2, 'warmup_steps': 1, 'log_every': 1, 'eval_every': 100,
           'save_every': 1, 'threads': 1}
    raw.update(kw)
    return TrainConfig.from_dict(raw)


def fixed_batch_loss(model_dir, frames_file):
    from spatial_llava_ros.model.loading import load_model
    from spatial_llava_ros.training.packing import Packer, answer_loss, grounding_example

    loaded = load_model(model_dir, device='cpu')
    frames = [f for f in load_frames(frames_file)['frames'] if f.queries]
    template = PromptTemplate.load()
    packer = Packer(loaded.tokenizer, loaded.image_token_id,
                    loaded.model.config.image_seq_length, loaded.processor.image_processor)
    exs = [grounding_example(f.image, f.mark_ids, [(t, m) for t, m, _ in f.queries[:4]],
                             template) for f in frames]
    with torch.no_grad():
        loss, _ = answer_loss(loaded.model.eval(), packer.collate(exs))
    return float(loss)


@pytest.fixture(scope='module')
def two_step_run(tmp_path_factory):
    from spatial_llava_ros.training.trainer import train

    out = tmp_path_factory.mktemp('run')
    result = train(tiny_config(out), progress=False)
    return out, result


def test_two_steps_lower_the_loss_and_the_resolver_loads_the_result(two_step_run):
    from spatial_llava_ros.model.resolver import Resolver

    out, result = two_step_run
    assert result.steps == 2
    before = fixed_batch_loss(out / 'base', out / 'frames.pt')
    after = fixed_batch_loss(result.final_dir, out / 'frames.pt')
    assert after < before - 0.05, (before, after)
    resolver = Resolver.from_pretrained(result.final_dir, device='cpu')
    frame = next(f for f in load_frames(out / 'frames.pt')['frames']
                 if f.queries)
    res = resolver.score(frame.image, frame.mark_ids, frame.queries[0][0])
    assert res.best_id in frame.mark_ids
    assert sum(res.scores.values()) == pytest.approx(1.0, abs=1e-4)
    settings = json.loads((result.final_dir / 'som_settings.json').read_text())
    assert settings['scene_width'] == 160 and settings['text_height_336'] == 30.0
    log = [json.loads(line) for line in (out / 'train_log.jsonl').read_text().splitlines()]
    assert [e['step'] for e in log if 'loss' in e] == [1, 2]
    assert resolver.template == PromptTemplate.load()  # it carries the default it learned


def test_the_model_carries_the_prompt_it_was_trained_with(tmp_path):
    """data.prompt: a template without the mark list trains, travels as prompt.yaml, and the
    resolver then asks in that wording (no list in the frame text)."""
    from spatial_llava_ros.model.resolver import Resolver
    from spatial_llava_ros.paths import config_path
    from spatial_llava_ros.training.trainer import train

    text = config_path('prompt.yaml').read_text()
    listed = 'The objects in the image are labelled with numeric marks: {marks}.'
    assert listed in text
    own = tmp_path / 'unlisted.yaml'
    own.write_text(text.replace(listed, '', 1))  # the first one is frame_prefix's
    result = train(tiny_config(tmp_path / 'run', steps=1, data={**DATA, 'prompt': str(own)}),
                   progress=False)
    assert (result.final_dir / 'prompt.yaml').read_text() == own.read_text()
    resolver = Resolver.from_pretrained(result.final_dir, device='cpu')
    assert '{marks}' not in resolver.template.frame_prefix
    assert '3, 7' not in resolver.template.frame_text([3, 7])
    assert '3, 7' in PromptTemplate.load().frame_text([3, 7])


def test_packed_loss_equals_the_resolvers_log_likelihood(two_step_run):
    from spatial_llava_ros.model.resolver import Resolver
    from spatial_llava_ros.training.packing import Example, Packer, Segment, branch_logprobs

    out, result = two_step_run
    resolver = Resolver.from_pretrained(result.final_dir, device='cpu')
    frame = next(f for f in load_frames(out / 'frames.pt')['frames']
                 if len(f.queries) >= 2)
    query = frame.queries[1][0]
    res = resolver.score(frame.image, frame.mark_ids, query)
    loaded = resolver.loaded
    template = PromptTemplate.load()
    packer = Packer(loaded.tokenizer, loaded.image_token_id,
                    loaded.model.config.image_seq_length, loaded.processor.image_processor)
    ex = Example(frame.image, template.frame_text(frame.mark_ids),
                 [[Segment(template.query_text(query)),
                   Segment(template.answer_text(m), target=True, eos=True)]
                  for m in frame.mark_ids])
    ours = branch_logprobs(loaded.model, packer, ex)
    theirs = [res.log_likelihoods[m] for m in frame.mark_ids]
    assert ours == pytest.approx(theirs, abs=1e-3)


def test_resume_continues_from_the_last_checkpoint(two_step_run, tmp_path):
    import shutil

    from spatial_llava_ros.training.trainer import train

    out, _ = two_step_run
    copy = tmp_path / 'copy'
    shutil.copytree(out, copy)
    result = train(tiny_config(copy, steps=3), progress=False)
    meta = json.loads((copy / 'train_meta.json').read_text())
    assert meta['resumed_from_step'] == 2 and result.steps == 3
    assert sorted(p.name for p in copy.glob('checkpoint-*')) == ['checkpoint-2', 'checkpoint-3']


@needs('peft')
def test_lora_run_exports_a_merged_checkpoint(tmp_path):
    from spatial_llava_ros.model.loading import load_model
    from spatial_llava_ros.training.trainer import train

    result = train(tiny_config(tmp_path / 'lora', steps=1, lm='lora', vision='frozen',
                               lora_r=4, data=dict(DATA, val_seeds='')), progress=False)
    loaded = load_model(result.final_dir, device='cpu')
    names = [n for n, _ in loaded.model.named_parameters()]
    assert not any('lora' in n for n in names)


def test_config_errors_name_the_problem(tmp_path):
    with pytest.raises(InputError, match='lm must be full, lora or frozen'):
        tiny_config(tmp_path, lm='half')
    with pytest.raises(InputError, match="unknown model keys \\['layers'\\]"):
        TrainConfig.from_dict({'model': {'layers': 3}})
    with pytest.raises(InputError, match='seeds are in both train and val'):
        tiny_config(tmp_path, data=dict(DATA, val_seeds='7003:7005'))
    assert parse_seeds('3:6') == [3, 4, 5] and parse_seeds('1,4') == [1, 4]
    with pytest.raises(InputError, match='empty'):
        parse_seeds('5:5')


def test_reading_targets_point_at_the_drawn_numbers(two_step_run):
    from spatial_llava_ros.model.image import pixel_values
    from spatial_llava_ros.model.loading import load_model
    from spatial_llava_ros.model.tiny import build_processor
    from spatial_llava_ros.training.trainer import reading_targets

    out, result = two_step_run
    loaded = load_model(result.final_dir, device='cpu')
    size, patch = 160, 16  # big enough for the digits' white fill to survive the resize
    processor = build_processor(loaded.tokenizer, image_size=size, patch_size=patch)
    frames = [f for f in load_frames(out / 'frames.pt')['frames']
              if f.anchors]
    white_at_mark, white_elsewhere = [], []
    for f in frames:
        pv = pixel_values(processor.image_processor, f.image)[0]
        white = (pv.min(0).values > 1.5).float()  # saturated white: the digits' fill
        cells = white.reshape(size // patch, patch, size // patch, patch).mean((1, 3)).flatten()
        targets = reading_targets(f.anchors, f.image.shape[:2], size, patch, loaded.tokenizer)
        hit = {k for k, _ in targets}
        white_at_mark += [float(cells[k]) for k in hit]
        white_elsewhere += [float(c) for k, c in enumerate(cells) if k not in hit]
        for (_k, tok), mark in zip(targets, f.anchors):
            assert loaded.tokenizer.convert_ids_to_tokens(tok) == str(mark)[0]
    assert sum(white_at_mark) / len(white_at_mark) > 3 * sum(white_elsewhere) / len(
        white_elsewhere)


def test_vision_lr_scale_puts_the_tower_in_its_own_groups():
    from transformers import LlavaForConditionalGeneration

    from spatial_llava_ros.model.tiny import tiny_config as llava_config
    from spatial_llava_ros.training.trainer import _param_groups, _trainable

    cfg = tiny_config('unused', vision='train', vision_lr_scale=0.1)
    shape = {'image_size': 32, 'patch_size': 8, 'vision_hidden': 32, 'vision_layers': 1,
             'text_hidden': 32, 'text_layers': 1, 'heads': 2}
    model, llava = _trainable(LlavaForConditionalGeneration(llava_config(40, 39, **shape)), cfg)
    groups = _param_groups(model, cfg)
    tower = {id(p) for p in llava.model.vision_tower.parameters()}
    for g in groups:
        in_tower = {id(p) in tower for p in g['params']}
        assert len(in_tower) == 1  # a group is all tower or none of it
        assert g['lr'] == pytest.approx(cfg.lr * (0.1 if in_tower.pop() else 1.0))
    assert sum(len(g['params']) for g in groups) == sum(
        p.requires_grad for p in model.parameters())
    with pytest.raises(InputError, match='vision_lr_scale'):
        tiny_config('unused', vision_lr_scale=0)
