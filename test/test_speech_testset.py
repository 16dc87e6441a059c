"""The espeak-ng test set: what the script writes, and that its commands fit their scenes."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from needs import require

from spatial_llava_ros.speech.audio import load_audio
from spatial_llava_ros.speech.command import parse_command
from spatial_llava_ros.speech.testset import (
    NEGATIVE_KINDS,
    espeak_available,
    load_manifest,
    make_testset,
)

pytestmark = pytest.mark.skipif(espeak_available() is None,
                                reason='espeak-ng not installed (apt-get install espeak-ng)')
SCRIPT = Path(__file__).resolve().parents[1] / 'scripts' / 'make_speech_testset.py'


def load_script():
    spec = importlib.util.spec_from_file_location('make_speech_testset', SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_script_writes_commands_and_negatives(tmp_path):
    module = load_script()
    assert module.main([str(tmp_path), '--n', '6', '--negatives', '4', '--seed', '5']) == 0
    items = load_manifest(tmp_path)
    commands = [u for u in items if u.kind == 'command']
    assert len(commands) == 6 and {u.kind for u in items} - {'command'} == set(NEGATIVE_KINDS)
    assert len({u.voice for u in commands}) == 6  # several voices
    assert sum(u.snr_db is not None for u in commands) == 3  # half with added noise
    for u in items:
        audio = load_audio(tmp_path / u.file)
        assert audio.dtype == np.float32 and len(audio) > 8000
    raw = json.loads((tmp_path / 'manifest.json').read_text())
    assert 'default=48' in SCRIPT.read_text()  # the bench's >= 40 commands by default
    assert raw[0]['scene_seed'] >= 0 and raw[0]['target_id'] is not None


def test_same_seed_same_commands(tmp_path):
    a = make_testset(tmp_path / 'a', 3, seed=7, n_negatives=0)
    b = make_testset(tmp_path / 'b', 3, seed=7, n_negatives=0)
    assert [u.text for u in a] == [u.text for u in b]
    assert [u.text for u in make_testset(tmp_path / 'c', 3, seed=8, n_negatives=0)] != [
        u.text for u in a]


def test_commands_are_in_their_scene_grammar(tmp_path):
    require('pocketsphinx')
    from spatial_llava_ros.speech.pocketsphinx_backend import PocketsphinxBackend

    backend = PocketsphinxBackend()
    for u in make_testset(tmp_path, 8, seed=3, n_negatives=0):
        backend.set_vocabulary(u.vocabulary())
        assert backend._fsgs[0].accept(u.text), u.text
        assert parse_command(u.text).text


def test_evaluation_reports_both_decodings(tmp_path):
    require('pocketsphinx')
    from spatial_llava_ros.speech.evaluate import aggregate, evaluate, markdown

    make_testset(tmp_path, 3, seed=2, n_negatives=2)
    result = evaluate(tmp_path)
    for mode in ('free', 'scene_aware'):
        s = result['modes'][mode]
        assert 0.0 <= s['exact'] <= s['exact_ungated'] <= 1.0
        assert s['wer'] >= s['wer_ungated'] >= 0.0
        assert s['silence_noise'] == 2 and s['silence_noise_accepted'] == 0
        assert len(result['rows'][mode]) == 5
    assert result['n_commands'] == 3 and result['noisy_commands'] == 1
    table = markdown(result)
    assert '| free (general LM) |' in table and '| scene-aware (grammar) |' in table
    pooled = aggregate([result, result], 'scene_aware')
    assert pooled['n_commands'] == 6 and pooled['wer'] == result['modes']['scene_aware']['wer']
