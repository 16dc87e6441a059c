"""Audio I/O and conversion to the one format every backend takes: 16 kHz mono float32.

Robots hear 44.1/48 kHz stereo from USB microphones and 16 kHz mono from ROS audio
topics; the recognisers and the VAD only take 16 kHz mono, so everything goes through
:func:`to_model_rate` once, at the boundary.
"""

from __future__ import annotations

import wave
from math import gcd
from pathlib import Path

import numpy as np

from spatial_llava_ros.errors import InputError

SAMPLE_RATE = 16000


def pcm_to_float(data: np.ndarray) -> np.ndarray:
    """Integer PCM (int16/int32/uint8) or float samples -> float32 in [-1, 1]."""
    data = np.asarray(data)
    if data.dtype == np.int16:
        return data.astype(np.float32) / 32768.0
    if data.dtype == np.int32:
        return (data.astype(np.float64) / 2147483648.0).astype(np.float32)
    if data.dtype == np.uint8:
        return (data.astype(np.float32) - 128.0) / 128.0
    if np.issubdtype(data.dtype, np.floating):
        return data.astype(np.float32, copy=False)
    raise InputError(f'unsupported sample type {data.dtype}; '
                     'expected int16, int32, uint8 or float')


def float_to_int16(samples: np.ndarray) -> np.ndarray:
    """float32 in [-1, 1] -> int16 PCM (clipped), the format pocketsphinx and ROS carry."""
    return np.clip(np.round(np.asarray(samples, np.float32) * 32767.0), -32768, 32767).astype(
        np.int16)


def to_mono(samples: np.ndarray) -> np.ndarray:
    """(N,) or (N, channels) -> (N,) by averaging channels."""
    samples = np.asarray(samples)
    if samples.ndim == 1:
        return samples
    if samples.ndim == 2 and samples.shape[1] >= 1:
        return samples.astype(np.float32).mean(axis=1)
    raise InputError(f'audio must be (samples,) or (samples, channels); got shape {samples.shape}')


def resample(samples: np.ndarray, rate: int, target: int = SAMPLE_RATE) -> np.ndarray:
    """Polyphase resampling (anti-aliased) from ``rate`` to ``target`` Hz."""
    if rate <= 0 or target <= 0:
        raise InputError(f'sample rates must be positive; got {rate} -> {target} Hz')
    if rate == target:
        return np.asarray(samples, np.float32)
    from scipy.signal import resample_poly

    g = gcd(int(rate), int(target))
    return resample_poly(np.asarray(samples, np.float32), target // g, rate // g).astype(
        np.float32)


def to_model_rate(samples: np.ndarray, rate: int) -> np.ndarray:
    """Any PCM/float array, mono or (N, channels), any rate -> 16 kHz mono float32."""
    samples = np.asarray(samples)
    if samples.size == 0:
        return np.zeros(0, np.float32)
    mono = to_mono(pcm_to_float(samples))
    return resample(mono, int(rate))


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """Read a WAV file -> (samples (N,) or (N, ch) float32 in [-1, 1], sample rate).

    PCM 8/16/24/32-bit and IEEE float WAVs are read (scipy for float and 24-bit).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'no such audio file: {path}')
    try:
        with wave.open(str(path), 'rb') as handle:
            rate = handle.getframerate()
            channels = handle.getnchannels()
            width = handle.getsampwidth()
            raw = handle.readframes(handle.getnframes())
        if width in (1, 2, 4):
            dtype = {1: np.uint8, 2: np.int16, 4: np.int32}[width]
            data = np.frombuffer(raw, dtype=dtype)
            data = pcm_to_float(data)
            return (data.reshape(-1, channels) if channels > 1 else data), rate
    except wave.Error:
        pass  # float or extensible WAV: scipy reads those
    from scipy.io import wavfile

    try:
        rate, data = wavfile.read(str(path))
    except ValueError as exc:
        raise InputError(f'{path} is not a readable WAV file: {exc}') from exc
    # scipy left-justifies 24-bit PCM into int32, which pcm_to_float scales correctly
    return pcm_to_float(data), int(rate)


def load_audio(path: str | Path) -> np.ndarray:
    """Read a WAV file and convert it to 16 kHz mono float32."""
    samples, rate = read_wav(path)
    if samples.size == 0:
        raise InputError(f'{path} holds 0 samples')
    return to_model_rate(samples, rate)


def write_wav(path: str | Path, samples: np.ndarray, rate: int = SAMPLE_RATE) -> Path:
    """Write float32 [-1, 1] (N,) or (N, ch) as 16-bit PCM WAV."""
    path = Path(path)
    samples = np.asarray(samples, np.float32)
    channels = 1 if samples.ndim == 1 else samples.shape[1]
    with wave.open(str(path), 'wb') as handle:
        handle.setnchannels(channels)
        handle.setsampwidth(2)
        handle.setframerate(int(rate))
        handle.writeframes(float_to_int16(samples).tobytes())
    return path
