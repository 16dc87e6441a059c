"""Voice activity (Silero, from its wheel) on files and on streams."""

import numpy as np
import pytest
from needs import needs, require

from spatial_llava_ros.errors import InputError, ModelLoadError
from spatial_llava_ros.speech.audio import SAMPLE_RATE, load_audio, read_wav, write_wav
from spatial_llava_ros.speech.testset import espeak_available, synthesise
from spatial_llava_ros.speech.vad import (
    CHUNK,
    SileroVad,
    UtteranceSegmenter,
    VadConfig,
    silero_model_path,
    speech_segments,
)

pytestmark = needs('onnxruntime', 'silero_vad')


@pytest.fixture(scope='module')
def vad():
    return SileroVad()


@pytest.fixture(scope='module')
def spoken(tmp_path_factory):
    if espeak_available() is None:
        pytest.skip('espeak-ng not installed (apt-get install espeak-ng)')
    path = tmp_path_factory.mktemp('vad') / 'cmd.wav'
    synthesise('go to the chair left of the table', 'en-us', 160, path)
    return load_audio(path)


def test_model_ships_in_the_wheel():
    assert silero_model_path().name == 'silero_vad.onnx'
    with pytest.raises(ModelLoadError, match='nowhere.onnx'):
        SileroVad('/nowhere.onnx')


def test_silence_and_noise_have_no_speech(vad):
    rng = np.random.default_rng(0)
    for audio in (np.zeros(2 * SAMPLE_RATE, np.float32),
                  rng.normal(0, 0.2, 2 * SAMPLE_RATE).astype(np.float32)):
        vad.reset()
        probs = vad.probabilities(audio)
        assert probs.shape == (2 * SAMPLE_RATE // CHUNK,)
        assert speech_segments(probs) == []


def test_chunks_are_checked(vad):
    with pytest.raises(InputError, match='512'):
        vad.chunk_probability(np.zeros(100, np.float32))


def test_speech_segment_brackets_the_command(vad, spoken):
    lead = np.zeros(SAMPLE_RATE, np.float32)
    audio = np.concatenate([lead, spoken, lead])
    vad.reset()
    segments = speech_segments(vad.probabilities(audio))
    assert len(segments) == 1
    start, end = segments[0]
    assert 0.8 * SAMPLE_RATE < start < 1.1 * SAMPLE_RATE
    assert end - start > 0.7 * len(spoken)
    assert end < len(audio) - 0.8 * SAMPLE_RATE


def test_probabilities_are_the_same_in_any_chunking(vad, spoken):
    vad.reset()
    whole = vad.probabilities(spoken)
    vad.reset()
    parts = np.concatenate([vad.probabilities(spoken[i:i + 777])
                            for i in range(0, len(spoken), 777)])
    np.testing.assert_allclose(parts, whole[:len(parts)], atol=1e-5)


def test_stream_segmenter_cuts_two_utterances(vad, spoken):
    gap = np.zeros(SAMPLE_RATE, np.float32)
    stream = np.concatenate([gap, spoken, gap, spoken, gap[:SAMPLE_RATE // 4]])
    seg = UtteranceSegmenter(vad, VadConfig())
    found = []
    for i in range(0, len(stream), 1600):  # 100 ms chunks, like a ROS audio topic
        found += seg.feed(stream[i:i + 1600])
    found += seg.flush()
    assert len(found) == 2
    second = 2 * SAMPLE_RATE + len(spoken)
    for (start_s, utt), expect in zip(found, (SAMPLE_RATE, second)):
        assert abs(start_s * SAMPLE_RATE - expect) < 0.15 * SAMPLE_RATE
        assert 0.7 * len(spoken) < len(utt) < 1.3 * len(spoken)


def test_stream_of_silence_gives_nothing(vad):
    seg = UtteranceSegmenter(vad)
    for _ in range(30):
        assert seg.feed(np.zeros(1600, np.float32)) == []
    assert seg.flush() == []


def test_long_speech_is_cut_at_max_utterance(vad, spoken, tmp_path):
    long = np.concatenate([spoken] * 4)
    seg = UtteranceSegmenter(vad, max_utterance_s=2.0)
    found = seg.feed(long) + seg.flush()
    assert len(found) >= 2 and all(len(u) <= 2.2 * SAMPLE_RATE for _, u in found)
    write_wav(tmp_path / 'x.wav', long)
    assert read_wav(tmp_path / 'x.wav')[1] == SAMPLE_RATE


def test_stream_transcriber_hears_each_command_once(spoken):
    require('pocketsphinx')
    from spatial_llava_ros.speech.grammar import SceneVocabulary
    from spatial_llava_ros.speech.recognizer import SpeechRecognizer
    from spatial_llava_ros.speech.stream import StreamTranscriber

    vocab = SceneVocabulary.from_objects([('red', 'chair'), ('brown', 'table')], [1, 2])
    stream = StreamTranscriber(SpeechRecognizer(vocabulary=vocab))
    rng = np.random.default_rng(1)
    gap = np.zeros(SAMPLE_RATE, np.float32)
    noise = rng.normal(0, 0.05, SAMPLE_RATE).astype(np.float32)
    audio = np.concatenate([gap, spoken, gap, noise, gap, spoken, gap])
    heard = []
    for i in range(0, len(audio), 1600):
        heard += stream.feed(audio[i:i + 1600])
    heard += stream.flush()
    assert [t.text for t in heard if t.heard] == ['go to the chair left of the table'] * 2
    second = (4 * SAMPLE_RATE + len(spoken)) / SAMPLE_RATE
    assert abs(heard[-1].start_s - second) < 0.3
