"""Loading local LLaVA checkpoints (tiny random ones): round trip, adapters, every error path."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from spatial_llava_ros.cli import main as cli_main
from spatial_llava_ros.errors import ModelLoadError
from spatial_llava_ros.model.loading import load_model, pick_dtype
from spatial_llava_ros.model.resolver import Resolver
from spatial_llava_ros.model.tiny import make_tiny_model


@pytest.fixture(scope='module')
def tiny_dir(tmp_path_factory):
    torch.set_num_threads(1)
    return make_tiny_model(tmp_path_factory.mktemp('tiny') / 'ckpt', seed=5)


@pytest.fixture()
def copy_dir(tiny_dir, tmp_path):
    dst = tmp_path / 'copy'
    shutil.copytree(tiny_dir, dst)
    return dst


def _logits(loaded, seed=0):
    g = torch.Generator().manual_seed(seed)
    cfg = loaded.model.config
    n_img = (cfg.vision_config.image_size // cfg.vision_config.patch_size) ** 2
    ids = [loaded.tokenizer.bos_token_id] + [cfg.image_token_id] * n_img + [7, 8, 9]
    size = cfg.vision_config.image_size
    pv = torch.randn(1, 3, size, size, generator=g)
    with torch.no_grad():
        return loaded.model(input_ids=torch.tensor([ids]), pixel_values=pv).logits


def test_tiny_checkpoint_has_the_llava_hf_layout(tiny_dir):
    names = {p.name for p in tiny_dir.iterdir()}
    assert {'config.json', 'model.safetensors', 'tokenizer.json', 'processor_config.json'} <= names
    cfg = json.loads((tiny_dir / 'config.json').read_text())
    assert cfg['model_type'] == 'llava' and cfg['vision_feature_select_strategy'] == 'default'
    assert cfg['text_config']['hidden_size'] == 32 and cfg['text_config']['num_hidden_layers'] == 2
    proc = json.loads((tiny_dir / 'processor_config.json').read_text())
    assert proc['patch_size'] == 8 and proc['num_additional_image_tokens'] == 1


def test_load_defaults_on_cpu_are_float32(tiny_dir):
    loaded = load_model(tiny_dir)
    assert loaded.device.type == ('cuda' if torch.cuda.is_available() else 'cpu')
    if loaded.device.type == 'cpu':
        assert loaded.dtype == torch.float32
    assert loaded.tokenizer.convert_tokens_to_ids('<image>') == loaded.image_token_id
    assert not loaded.model.training and loaded.path == tiny_dir


def test_dtype_is_overridable(tiny_dir):
    loaded = load_model(tiny_dir, device='cpu', dtype='bf16')
    assert loaded.dtype == torch.bfloat16
    assert next(loaded.model.parameters()).dtype == torch.bfloat16
    assert pick_dtype(None, torch.device('cpu')) == torch.float32
    assert pick_dtype(torch.float16, torch.device('cpu')) == torch.float16


def test_save_load_round_trip(tiny_dir, tmp_path):
    a = load_model(tiny_dir, device='cpu')
    out = tmp_path / 'saved'
    a.model.save_pretrained(out)
    a.processor.save_pretrained(out)
    b = load_model(out, device='cpu')
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert torch.equal(_logits(a), _logits(b))
    img = np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    ra = Resolver(a).score(img, [1, 2, 12], 'the chair')
    rb = Resolver(b).score(img, [1, 2, 12], 'the chair')
    assert ra.scores == rb.scores


def test_lora_adapter_explicit_and_auto_detected(tiny_dir, tmp_path):
    peft = pytest.importorskip('peft')
    base = load_model(tiny_dir, device='cpu')
    lora_cfg = peft.LoraConfig(r=4, target_modules=['q_proj', 'v_proj'], init_lora_weights=False)
    peft_model = peft.get_peft_model(base.model, lora_cfg)
    adapter_dir = tmp_path / 'adapter'
    peft_model.save_pretrained(adapter_dir)
    cfg = json.loads((adapter_dir / 'adapter_config.json').read_text())
    assert cfg['base_model_name_or_path'] == str(tiny_dir)
    expected = _logits(base)  # base.model now carries the LoRA layers
    plain = _logits(load_model(tiny_dir, device='cpu'))
    assert not torch.allclose(expected, plain, atol=1e-4)  # the adapter does change the output
    explicit = load_model(tiny_dir, device='cpu', adapter=adapter_dir)
    auto = load_model(adapter_dir, device='cpu')
    assert auto.path == tiny_dir and auto.adapter == adapter_dir
    for loaded in (explicit, auto):
        torch.testing.assert_close(_logits(loaded), expected, atol=1e-5, rtol=1e-4)


def test_adapter_whose_base_is_not_local(tmp_path):
    adapter = tmp_path / 'adapter'
    adapter.mkdir()
    (adapter / 'adapter_config.json').write_text(
        json.dumps({'base_model_name_or_path': 'llava-hf/llava-1.5-7b-hf', 'peft_type': 'LORA'})
    )
    with pytest.raises(ModelLoadError, match='not a local directory'):
        load_model(adapter)


def test_missing_path(tmp_path):
    with pytest.raises(ModelLoadError, match='does not exist'):
        load_model(tmp_path / 'nope')
    (tmp_path / 'file.bin').write_bytes(b'x')
    with pytest.raises(ModelLoadError, match='not a directory'):
        load_model(tmp_path / 'file.bin')
    with pytest.raises(ModelLoadError, match='no config.json'):
        load_model(tmp_path)


def test_not_a_llava_checkpoint(copy_dir):
    cfg = json.loads((copy_dir / 'config.json').read_text())
    cfg['model_type'] = 'llama'
    (copy_dir / 'config.json').write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError, match="'llama' checkpoint, not a supported .*llava_next"):
        load_model(copy_dir)
    (copy_dir / 'config.json').write_text('{not json')
    with pytest.raises(ModelLoadError, match='not valid JSON'):
        load_model(copy_dir)


def test_tokenizer_without_image_token(copy_dir):
    tok = json.loads((copy_dir / 'tokenizer.json').read_text())
    tok['added_tokens'] = [t for t in tok['added_tokens'] if t['content'] != '<image>']
    tok['model']['vocab'].pop('<image>')
    (copy_dir / 'tokenizer.json').write_text(json.dumps(tok))
    tcfg = json.loads((copy_dir / 'tokenizer_config.json').read_text())
    tcfg.pop('image_token', None)
    tcfg['extra_special_tokens'] = []
    (copy_dir / 'tokenizer_config.json').write_text(json.dumps(tcfg))
    with pytest.raises(ModelLoadError, match='no <image> token'):
        load_model(copy_dir)


def test_image_token_id_mismatch(copy_dir):
    cfg = json.loads((copy_dir / 'config.json').read_text())
    key = 'image_token_id' if 'image_token_id' in cfg else 'image_token_index'
    cfg[key] = cfg[key] - 1
    (copy_dir / 'config.json').write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError, match='maps <image> to'):
        load_model(copy_dir)


def test_truncated_safetensors(copy_dir):
    weights = copy_dir / 'model.safetensors'
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match=rf'truncated: tensors need {len(data)} bytes'):
        load_model(copy_dir)
    weights.write_bytes(data[:5])
    with pytest.raises(ModelLoadError, match='truncated: 5 bytes'):
        load_model(copy_dir)


def test_no_weights(copy_dir):
    (copy_dir / 'model.safetensors').unlink()
    with pytest.raises(ModelLoadError, match='no weights'):
        load_model(copy_dir)


def test_bad_device_and_dtype(tiny_dir):
    with pytest.raises(ModelLoadError, match='unknown dtype'):
        load_model(tiny_dir, dtype='int3')
    with pytest.raises(ModelLoadError, match='unknown device'):
        load_model(tiny_dir, device='quantum')
    if not torch.cuda.is_available():
        with pytest.raises(ModelLoadError, match='CUDA is not available'):
            load_model(tiny_dir, device='cuda')


def test_cli_make_tiny_model_and_resolve(tmp_path, capsys):
    from PIL import Image

    out = tmp_path / 'cli_model'
    assert cli_main(['make-tiny-model', str(out), '--image-size', '16', '--patch-size', '8']) == 0
    assert json.loads((out / 'config.json').read_text())['vision_config']['image_size'] == 16
    img = tmp_path / 'marked.png'
    Image.fromarray(np.full((20, 30, 3), 90, np.uint8)).save(img)
    capsys.readouterr()
    args = ['resolve', '--image', str(img), '--marks', '1,2,12', '--model', str(out)]
    assert cli_main(args + ['--query', 'the chair', '--query', 'the lamp']) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert first['query'] == 'the chair' and {m for m, _ in first['ranked']} == {1, 2, 12}
    assert cli_main(args[:4] + ['1,x', '--model', str(out), '--query', 'q']) == 2
    assert 'comma-separated integers' in capsys.readouterr().err
    assert cli_main(['resolve', '--image', str(img), '--marks', '1', '--query', 'q',
                     '--model', str(tmp_path / 'none')]) == 2
    assert 'does not exist' in capsys.readouterr().err
    assert cli_main(['make-tiny-model', str(tmp_path / 'x'), '--image-size', '20']) == 2


def test_tiny_factory_is_parameterisable(tmp_path):
    out = make_tiny_model(
        tmp_path / 'p', image_size=16, patch_size=4, text_hidden=48, text_layers=3,
        words=['armchair', 'Fireplace'], max_positions=256,
    )
    loaded = load_model(out, device='cpu')
    cfg = loaded.model.config
    assert (cfg.text_config.hidden_size, cfg.text_config.num_hidden_layers) == (48, 3)
    assert cfg.text_config.max_position_embeddings == 256
    tok = loaded.tokenizer
    ids = tok('the armchair left of the fireplace', add_special_tokens=False)['input_ids']
    assert tok.unk_token_id not in ids and len(ids) == 6
    assert tok.convert_ids_to_tokens(tok('mark 37', add_special_tokens=False)['input_ids']) == [
        'mark', '3', '7'
    ]
    img = np.zeros((16, 16, 3), np.uint8)
    res = Resolver(loaded).score(img, [3, 37], 'the armchair')
    assert Resolver(loaded).num_image_tokens == 16 and set(res.scores) == {3, 37}
    with pytest.raises(ValueError, match='not a multiple'):
        make_tiny_model(tmp_path / 'q', image_size=18, patch_size=4)


@pytest.mark.slow
def test_real_checkpoint_from_env():
    """A real LLaVA-1.5 / Spatial-LLaVA directory, when one is available locally."""
    import os

    path = os.environ.get('SPATIAL_LLAVA_CHECKPOINT')
    if not path:
        pytest.skip('set SPATIAL_LLAVA_CHECKPOINT to a local llava-hf style directory')
    resolver = Resolver.from_pretrained(path)
    assert resolver.num_image_tokens == 576
    assert len(resolver.answer_ids(12)) == len(resolver.answer_ids(3)) + 1  # one per digit
    img = np.full((336, 448, 3), 127, np.uint8)
    res = resolver.score(img, [1, 2, 12], 'the chair left of the table')
    assert sum(res.scores.values()) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize('where', ['tiny', 'shipped'])
def test_word_level_tokenizer_decodes_a_number_as_one_word(tiny_dir, where):
    """Digits are single tokens (mark 12 is "1" "2"); a decoded answer must still say 12, or
    a free-form description naming mark 12 reads as marks 1 and 2."""
    from transformers import AutoTokenizer

    from spatial_llava_ros.evaluation.describe import named_marks
    from spatial_llava_ros.paths import model_dir

    path = tiny_dir if where == 'tiny' else model_dir()
    tok = AutoTokenizer.from_pretrained(path)
    text = 'mark 12. it is the mug, and mark 3.'
    ids = tok(text, add_special_tokens=False)['input_ids']
    assert len(ids) > len(text.split())  # 12 is two tokens
    assert tok.decode(ids) == text
    assert named_marks(tok.decode(ids)) == [12, 3]


def test_whole_number_tokenizer_gives_a_mark_one_token(tmp_path):
    """``whole_numbers`` (an option the oracle diagnostic measures, bench/oracle_lm.py): 0..99
    are one token each, so mark 12 is one answer token; the text still round-trips."""
    from transformers import AutoTokenizer

    from spatial_llava_ros.model.tiny import build_tokenizer

    build_tokenizer(words=['marks'], whole_numbers=True).save_pretrained(tmp_path)
    tok = AutoTokenizer.from_pretrained(tmp_path)
    assert tok.convert_ids_to_tokens(tok(' 12', add_special_tokens=False)['input_ids']) == ['12']
    text = 'marks 1, 12 and 40.'
    ids = tok(text, add_special_tokens=False)['input_ids']
    assert len(ids) == 7
    assert tok.decode(ids) == text
