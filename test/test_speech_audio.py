"""Audio conversions: any WAV (rate, channels, sample type) -> 16 kHz mono float32."""

import wave

import numpy as np
import pytest

from spatial_llava_ros.errors import InputError
from spatial_llava_ros.speech.audio import (
    SAMPLE_RATE,
    float_to_int16,
    load_audio,
    pcm_to_float,
    read_wav,
    resample,
    to_model_rate,
    write_wav,
)
from spatial_llava_ros.speech.ros_bridge import decode_int16, decode_pcm


def tone(freq: float, rate: int, seconds: float = 1.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_hz(x: np.ndarray, rate: int = SAMPLE_RATE) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[np.argmax(spectrum)])


@pytest.mark.parametrize('rate', [8000, 22050, 44100, 48000])
def test_resample_keeps_pitch_and_duration(rate):
    out = resample(tone(440.0, rate), rate)
    assert out.dtype == np.float32
    assert abs(out.shape[0] - SAMPLE_RATE) <= 2
    assert abs(peak_hz(out) - 440.0) < 3.0
    assert 0.45 < np.abs(out).max() < 0.55


def test_resample_removes_content_above_new_nyquist():
    out = resample(tone(12000.0, 48000), 48000)  # above 8 kHz: must not alias to 4 kHz
    assert np.sqrt(np.mean(out[100:-100] ** 2)) < 0.01


def test_stereo_is_averaged_to_mono():
    left, right = tone(300.0, 16000), tone(300.0, 16000, amp=0.1)
    out = to_model_rate(np.stack([left, right], axis=1), 16000)
    assert out.shape == (16000,)
    np.testing.assert_allclose(out, (left + right) / 2, atol=1e-6)


def test_int_pcm_scaling():
    assert pcm_to_float(np.array([-32768, 0, 16384], np.int16)).tolist() == [-1.0, 0.0, 0.5]
    assert pcm_to_float(np.array([0, 128, 255], np.uint8))[1] == 0.0
    assert abs(pcm_to_float(np.array([2 ** 30], np.int32))[0] - 0.5) < 1e-6
    assert float_to_int16(np.array([2.0, -2.0], np.float32)).tolist() == [32767, -32768]
    with pytest.raises(InputError, match='complex'):
        pcm_to_float(np.array([1j]))


def test_stereo_48k_wav_is_read_and_converted(tmp_path):
    x = tone(500.0, 48000, 0.5)
    path = write_wav(tmp_path / 's.wav', np.stack([x, x], axis=1), 48000)
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getframerate()) == (2, 48000)
    samples, rate = read_wav(path)
    assert samples.shape == (24000, 2) and rate == 48000
    out = load_audio(path)
    assert out.shape[0] == 8000 and abs(peak_hz(out) - 500.0) < 5.0


def test_float_wav_via_scipy(tmp_path):
    from scipy.io import wavfile

    wavfile.write(tmp_path / 'f.wav', 22050, tone(1000.0, 22050, 0.5))
    out = load_audio(tmp_path / 'f.wav')
    assert abs(out.shape[0] - 8000) <= 1 and abs(peak_hz(out) - 1000.0) < 5.0


def test_bad_files_are_typed_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_audio(tmp_path / 'missing.wav')
    (tmp_path / 'junk.wav').write_bytes(b'not a wav at all')
    with pytest.raises(InputError, match='junk.wav'):
        load_audio(tmp_path / 'junk.wav')
    write_wav(tmp_path / 'empty.wav', np.zeros(0, np.float32))
    with pytest.raises(InputError, match='0 samples'):
        load_audio(tmp_path / 'empty.wav')
    with pytest.raises(InputError, match='shape'):
        to_model_rate(np.zeros((2, 2, 2)), 16000)
    with pytest.raises(InputError, match='positive'):
        resample(np.zeros(10), 0)


def test_ros_payload_decoding():
    pcm = np.array([[1, -1], [1000, -1000]], np.int16)
    out = decode_pcm(pcm.tobytes(), 'S16LE', 2)
    np.testing.assert_array_equal(out, pcm)
    np.testing.assert_array_equal(decode_int16(pcm.reshape(-1).tolist(), 2), pcm)
    f = decode_pcm(np.array([0.25, -0.5], '<f4').tobytes(), 'F32LE', 1)
    assert f.tolist() == [0.25, -0.5]
    with pytest.raises(InputError, match='3 bytes'):
        decode_pcm(b'abc', 'S16LE', 1)
    with pytest.raises(InputError, match='sample_format'):
        decode_pcm(b'', 'MP3', 1)
    with pytest.raises(InputError, match='3 samples'):
        decode_int16([1, 2, 3], 2)
