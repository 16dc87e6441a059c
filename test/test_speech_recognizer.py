"""Audio -> Transcript: spoken commands are recognised, silence and noise never are."""

import json

import numpy as np
import pytest
from needs import needs

from spatial_llava_ros.errors import InputError, ModelLoadError
from spatial_llava_ros.speech.audio import SAMPLE_RATE, load_audio, read_wav, write_wav
from spatial_llava_ros.speech.grammar import SceneVocabulary
from spatial_llava_ros.speech.testset import espeak_available, synthesise

pytestmark = needs('pocketsphinx', 'silero_vad')
needs_espeak = pytest.mark.skipif(espeak_available() is None,
                                  reason='espeak-ng not installed (apt-get install espeak-ng)')
OBJECTS = [('red', 'chair'), ('brown', 'table'), ('white', 'mug'), ('blue', 'mug'),
           ('green', 'plant'), ('black', 'lamp')]
VOCAB = SceneVocabulary.from_objects(OBJECTS, [1, 2, 3, 4, 5, 6])


@pytest.fixture(scope='module')
def recognizer():
    from spatial_llava_ros.speech.recognizer import SpeechRecognizer

    return SpeechRecognizer(vocabulary=VOCAB)


@pytest.fixture(scope='module')
def clips(tmp_path_factory):
    if espeak_available() is None:
        pytest.skip('espeak-ng not installed (apt-get install espeak-ng)')
    out = tmp_path_factory.mktemp('speech')
    texts = {'chair': 'go to the chair left of the table',
             'mug': 'pick up the second mug from the left',
             'mark': 'mark three'}
    for name, text in texts.items():  # with the pause people leave around a command
        synthesise(text, 'en-us', 150, out / 'raw.wav')
        samples, rate = read_wav(out / 'raw.wav')
        pad = np.zeros(int(0.3 * rate), np.float32)
        write_wav(out / f'{name}.wav', np.concatenate([pad, samples, pad]), rate)
    return out, texts


def test_silence_is_not_a_command(recognizer):
    for audio in (np.zeros(2 * SAMPLE_RATE, np.float32),
                  np.random.default_rng(0).normal(0, 1e-4, SAMPLE_RATE).astype(np.float32)):
        t = recognizer.transcribe(audio)
        assert not t.heard and t.text == '' and t.query == '' and 'no speech' in t.reason


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_noise_is_not_a_command(recognizer, seed):
    rng = np.random.default_rng(seed)
    white = rng.normal(0, 0.3, 3 * SAMPLE_RATE)
    hum = 0.3 * np.sin(2 * np.pi * 50 * np.arange(3 * SAMPLE_RATE) / SAMPLE_RATE)
    for audio in (white, hum, white * 0.1 + hum):
        t = recognizer.transcribe(audio.astype(np.float32))
        assert not t.heard and t.text == '', t


def test_too_short_clip(recognizer):
    t = recognizer.transcribe(np.zeros(100, np.float32))
    assert not t.heard and 'too short' in t.reason


@needs_espeak
def test_spoken_commands_scene_aware(recognizer, clips):
    out, texts = clips
    recognizer.set_vocabulary(VOCAB)
    t = recognizer.transcribe(load_audio(out / 'chair.wav'))
    assert t.heard and t.text == texts['chair'] and t.confidence >= recognizer.min_confidence
    assert (t.action, t.query) == ('go_to', 'the chair left of the table')
    assert 0.0 < t.start_s < t.end_s
    t = recognizer.transcribe(load_audio(out / 'mug.wav'))
    assert t.heard and t.text == texts['mug'] and t.action == 'pick_up'
    t = recognizer.transcribe(load_audio(out / 'mark.wav'))
    assert t.heard and t.text == 'mark 3' and t.query == 'mark 3'


@needs_espeak
def test_stereo_48k_gives_the_same_command(recognizer, clips, tmp_path):
    from spatial_llava_ros.speech.audio import resample

    out, texts = clips
    samples, rate = read_wav(out / 'chair.wav')
    up = resample(samples, rate, 48000)
    stereo = np.stack([up, 0.5 * up], axis=1)
    write_wav(tmp_path / 'stereo.wav', stereo, 48000)
    t = recognizer.transcribe(load_audio(tmp_path / 'stereo.wav'))
    assert t.heard and t.text == texts['chair']
    t2 = recognizer.transcribe(stereo, 48000)  # arrays at any rate work too
    assert t2.text == texts['chair']


@needs_espeak
def test_free_decoding_is_what_the_grammar_fixes(clips):
    """The measured reason scene-aware is the default: the general LM garbles it."""
    from spatial_llava_ros.speech.recognizer import SpeechRecognizer

    out, texts = clips
    free = SpeechRecognizer(scene_aware=False, min_confidence=0.0)
    t = free.transcribe(load_audio(out / 'chair.wav'))
    assert t.text != texts['chair']


@needs_espeak
def test_transcribe_file_default_and_scene(clips):
    from spatial_llava_ros.scene import generate_scene
    from spatial_llava_ros.speech import transcribe_file

    out, texts = clips
    t = transcribe_file(out / 'chair.wav', scene_vocabulary=VOCAB)
    assert t.heard and t.text == texts['chair']
    t = transcribe_file(out / 'mug.wav')  # no scene: every category the generator knows
    assert t.heard and t.text == texts['mug']
    scene = next(s for s in (generate_scene(seed, 160, 120) for seed in range(1, 50))
                 if all(o.category != 'chair' for o in s.objects))  # no chair in view
    t = transcribe_file(out / 'chair.wav', scene_vocabulary=scene)
    assert 'chair' not in t.text  # the grammar cannot say what is not there


def test_unknown_backend_and_bad_vocabulary():
    from spatial_llava_ros.speech.recognizer import SpeechRecognizer, make_backend

    with pytest.raises(InputError, match='unknown speech backend'):
        make_backend('kaldi')
    with pytest.raises(InputError, match='SceneVocabulary'):
        SpeechRecognizer(vocabulary=42)


def test_whisper_missing_model_dir_is_a_clear_error(tmp_path):
    from spatial_llava_ros.speech.recognizer import make_backend

    with pytest.raises(ModelLoadError, match='needs a local model directory'):
        make_backend('whisper', None)
    missing = tmp_path / 'no-such-whisper'
    with pytest.raises(ModelLoadError, match=str(missing)):
        make_backend('whisper', missing)
    missing.mkdir()
    with pytest.raises(ModelLoadError, match='config.json missing'):
        make_backend('whisper', missing)


def test_tiny_whisper_loads_and_decodes(tmp_path):
    """The real loading path (from_pretrained, processor, generate) on a tiny random model."""
    pytest.importorskip('transformers')
    from spatial_llava_ros.speech.recognizer import SpeechRecognizer
    from spatial_llava_ros.speech.whisper_tiny import make_tiny_whisper

    path = make_tiny_whisper(tmp_path / 'whisper')
    rng = np.random.default_rng(0)
    t_ = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    voiced = (np.sin(2 * np.pi * 140 * t_) * (1 + np.sin(2 * np.pi * 3 * t_))) * 0.2
    audio = (voiced + rng.normal(0, 0.01, SAMPLE_RATE)).astype(np.float32)
    r = SpeechRecognizer('whisper', path, vocabulary=VOCAB, min_confidence=0.0)
    assert r.backend.device == 'cpu' or r.backend.device.startswith('cuda')
    assert 'chair' in r.backend.prompt and 'mark one' in r.backend.prompt
    result = r.backend.recognize(audio)
    assert 0.0 <= result.confidence <= 1.0
    # a random model's text is noise; the default gate (0.5) must not let it through
    gated = SpeechRecognizer('whisper', path, vocabulary=VOCAB)
    t = gated.transcribe(audio, use_vad=False)
    assert not t.heard


@needs_espeak
def test_cli_transcribe(clips, capsys):
    from spatial_llava_ros.cli import main

    out, texts = clips
    assert main(['transcribe', str(out / 'mug.wav')]) == 0
    assert texts['mug'] in capsys.readouterr().out
    assert main(['transcribe', str(out / 'mug.wav'), '--json']) == 0
    data = json.loads(capsys.readouterr().out)
    assert data['heard'] and data['action'] == 'pick_up'


def test_cli_no_command_and_errors(tmp_path, capsys):
    from spatial_llava_ros.cli import main

    write_wav(tmp_path / 'quiet.wav', np.zeros(SAMPLE_RATE, np.float32))
    assert main(['transcribe', str(tmp_path / 'quiet.wav')]) == 1
    assert 'no command heard' in capsys.readouterr().out
    assert main(['transcribe', str(tmp_path / 'missing.wav')]) == 2
    assert main(['transcribe', 'x.wav', '--backend', 'whisper',
                 '--model-dir', str(tmp_path / 'nope')]) == 2
    assert 'nope' in capsys.readouterr().err
    assert main(['transcribe', '--grammar-from-scene', '3', '--print-grammar']) == 0
    assert 'public <command>' in capsys.readouterr().out
