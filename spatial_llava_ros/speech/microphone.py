"""Microphone input through sounddevice (optional: PortAudio is often absent on robots'
build machines and in CI). Everything else in speech/ works without it."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from spatial_llava_ros.errors import InputError
from spatial_llava_ros.speech.audio import SAMPLE_RATE, to_model_rate


def _sounddevice():  # noqa: ANN202 - the module
    try:
        import sounddevice
    except (ImportError, OSError) as exc:  # OSError: the PortAudio library is missing
        raise InputError(f'no microphone support: sounddevice/PortAudio unavailable ({exc}); '
                         'install libportaudio2 and sounddevice, or pass a WAV file') from exc
    try:
        sounddevice.query_devices(kind='input')
    except Exception as exc:  # noqa: BLE001 - PortAudioError / ValueError: no input device
        raise InputError(f'no input audio device found: {exc}') from exc
    return sounddevice


def record(seconds: float, device: int | str | None = None) -> np.ndarray:
    """Record ``seconds`` from the default (or given) input -> 16 kHz mono float32."""
    if not 0 < seconds <= 60:
        raise InputError(f'record between 0 and 60 s; got {seconds}')
    sd = _sounddevice()
    rate = int(sd.query_devices(device, kind='input')['default_samplerate'])
    data = sd.rec(int(seconds * rate), samplerate=rate, channels=1, dtype='float32',
                  device=device)
    sd.wait()
    return to_model_rate(data, rate)


def stream_chunks(device: int | str | None = None, chunk_s: float = 0.1) -> Iterator[np.ndarray]:
    """Endless 16 kHz mono chunks from the microphone (feed an UtteranceSegmenter)."""
    sd = _sounddevice()
    rate = int(sd.query_devices(device, kind='input')['default_samplerate'])
    block = int(chunk_s * rate)
    with sd.InputStream(samplerate=rate, channels=1, dtype='float32', device=device,
                        blocksize=block) as stream:
        while True:
            data, _overflowed = stream.read(block)
            yield to_model_rate(data, rate)


def listen(on_audio: Callable[[np.ndarray], bool], device: int | str | None = None) -> None:
    """Call ``on_audio(chunk)`` for each chunk until it returns False."""
    for chunk in stream_chunks(device):
        if not on_audio(chunk):
            break


__all__ = ['SAMPLE_RATE', 'listen', 'record', 'stream_chunks']
