"""Converted data read lazily: the byte index of a conversations JSON, the records and pixels
the dataset yields (equal to the in-memory path's), each rank's share of a global batch, and
a training run fed by DataLoader workers (equal to one fed in the main process)."""

import json

import numpy as np
import pytest
import torch

from spatial_llava_ros.errors import InputError
from spatial_llava_ros.training import datasets
from spatial_llava_ros.training.distributed import DistEnv

TINY = {'image_size': 32, 'patch_size': 8, 'vision_hidden': 32, 'vision_layers': 1,
        'text_hidden': 32, 'text_layers': 1, 'heads': 2}


@pytest.fixture(scope='module')
def converted(tmp_path_factory):
    from spatial_llava_ros.scene.generate import generate_scene
    from spatial_llava_ros.scene.io import write_scene
    from spatial_llava_ros.training.convert import convert

    root = tmp_path_factory.mktemp('ann')
    for seed in (0, 1, 2, 3):
        write_scene(generate_scene(seed, 160, 120), root / f'scene_{seed:04d}')
    out = root / 'conv'
    convert(root, out, val_fraction=0.0, seed=0)
    return out


def test_record_spans_index_every_record(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, 'CHUNK', 7)  # records straddle many chunk boundaries
    recs = [{'id': i, 'image': f'{i}.png', 'conversations': [{'value': 'é' * i + '}'}]}
            for i in range(30)]
    for text in (json.dumps(recs, indent=1, ensure_ascii=False),
                 '\n'.join(json.dumps(r) for r in recs) + '\n'):  # array, JSON Lines
        path = tmp_path / 'r.json'
        path.write_text(text, encoding='utf-8')
        raw = path.read_bytes()
        spans = datasets.record_spans(path)
        assert [json.loads(raw[a:b]) for a, b in spans] == recs
    path.write_text('[{"id": 1}, {"id": ', encoding='utf-8')
    with pytest.raises(InputError, match='not a JSON array of records'):
        datasets.record_spans(path)


def test_dataset_yields_what_the_in_memory_path_built(converted, tmp_path):
    from spatial_llava_ros.model.loading import load_model
    from spatial_llava_ros.model.prompt import PromptTemplate
    from spatial_llava_ros.model.tiny import make_tiny_model
    from spatial_llava_ros.training.config import TrainConfig
    from spatial_llava_ros.training.packing import Packer
    from spatial_llava_ros.training.trainer import load_json_examples

    template = PromptTemplate.load()
    loaded = load_model(make_tiny_model(tmp_path / 'm', image_size=32, patch_size=8),
                        device='cpu')
    packer = Packer(loaded.tokenizer, loaded.image_token_id,
                    loaded.model.config.image_seq_length, loaded.processor.image_processor)
    cfg = TrainConfig.from_dict({'data': {'source': 'json', 'val_seeds': '',
                                          'json_path': str(converted / 'train.json')}})
    eager = load_json_examples(cfg, template)
    lazy = datasets.ConversationDataset(converted / 'train.json', None, template, packer)
    assert len(lazy) == len(eager) == 4
    for i, ex in enumerate(eager):
        got = lazy[i]
        assert got.prefix == ex.prefix and got.branches == ex.branches
        assert torch.equal(got.pixel_values, packer.pixels(ex))


def test_each_rank_reads_its_share_of_the_same_global_batch():
    one = list(datasets.StepSampler(1000, 8, seed=3, start=5, stop=9, env=DistEnv(0, 1)))
    halves = [list(datasets.StepSampler(1000, 8, 3, 5, 9, DistEnv(r, 2))) for r in (0, 1)]
    for step, full in enumerate(one):
        assert sorted(halves[0][step] + halves[1][step]) == sorted(full)
        assert len(halves[0][step]) == len(halves[1][step]) == 4
    resumed = list(datasets.StepSampler(1000, 8, 3, 7, 9, DistEnv(0, 1)))
    assert resumed == one[2:]  # a resumed run draws what the first run would have
    assert one[0] != one[1]


def test_training_from_disk_with_loader_workers_equals_the_main_process(converted, tmp_path):
    from safetensors.torch import load_file

    from spatial_llava_ros.training.config import TrainConfig
    from spatial_llava_ros.training.trainer import train

    finals = []
    for workers in (0, 2):
        cfg = TrainConfig.from_dict({
            'output_dir': str(tmp_path / f'w{workers}'), 'model': dict(TINY),
            'data': {'source': 'json', 'json_path': str(converted / 'train.json'),
                     'workers': workers, 'val_seeds': ''},
            'steps': 3, 'batch_size': 2, 'lr': 1e-2, 'warmup_steps': 1, 'log_every': 1,
            'save_every': 10, 'threads': 1})
        result = train(cfg, progress=False)
        assert result.steps == 3
        log = [json.loads(x) for x in (tmp_path / f'w{workers}' / 'train_log.jsonl')
               .read_text().splitlines()]
        assert [e['step'] for e in log] == [1, 2, 3] and all(e['samples_per_s'] > 0
                                                             for e in log)
        finals.append(load_file(result.final_dir / 'model.safetensors'))
    a, b = finals
    assert all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)
