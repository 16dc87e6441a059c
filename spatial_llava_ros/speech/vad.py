"""Voice activity detection with Silero VAD, run through onnxruntime.

The ONNX model ships inside the ``silero-vad`` wheel; it is located without importing
the package (whose import pulls in torch and sets torch's global thread count), and run
on 512-sample (32 ms) chunks at 16 kHz with its recurrent state carried across chunks,
so the same code serves whole files and endless streams (ROS topic, microphone).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spatial_llava_ros.errors import InputError, ModelLoadError
from spatial_llava_ros.speech.audio import SAMPLE_RATE

CHUNK = 512  # samples per VAD step at 16 kHz
CONTEXT = 64  # samples of the previous chunk the model sees


def silero_model_path() -> Path:
    """The ONNX file inside the installed silero-vad wheel."""
    spec = importlib.util.find_spec('silero_vad')
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            'silero-vad is not installed; pip install "spatial_llava_ros[speech]"')
    path = Path(list(spec.submodule_search_locations)[0]) / 'data' / 'silero_vad.onnx'
    if not path.is_file():
        raise ModelLoadError(f'silero-vad model missing from its wheel: {path}')
    return path


class SileroVad:
    """Speech probability per 32 ms chunk; keeps state between calls (streaming)."""

    def __init__(self, model_path: str | Path | None = None) -> None:
        import onnxruntime

        path = Path(model_path) if model_path is not None else silero_model_path()
        if not path.is_file():
            raise ModelLoadError(f'VAD model not found: {path}')
        opts = onnxruntime.SessionOptions()
        opts.inter_op_num_threads = 1
        opts.intra_op_num_threads = 1
        self._session = onnxruntime.InferenceSession(
            str(path), sess_options=opts, providers=['CPUExecutionProvider'])
        self.reset()

    def reset(self) -> None:
        self._state = np.zeros((2, 1, 128), np.float32)
        self._context = np.zeros((1, CONTEXT), np.float32)
        self._pending = np.zeros(0, np.float32)

    def chunk_probability(self, chunk: np.ndarray) -> float:
        """Speech probability of exactly one 512-sample chunk."""
        if chunk.shape != (CHUNK,):
            raise InputError(f'VAD chunks are {CHUNK} samples; got shape {chunk.shape}')
        x = np.concatenate([self._context, chunk[None, :].astype(np.float32)], axis=1)
        out, self._state = self._session.run(
            None, {'input': x, 'state': self._state, 'sr': np.array(SAMPLE_RATE, np.int64)})
        self._context = x[:, -CONTEXT:]
        return float(out.reshape(-1)[0])

    def probabilities(self, audio: np.ndarray) -> np.ndarray:
        """Feed 16 kHz float32 audio; returns one probability per completed chunk."""
        data = np.concatenate([self._pending, np.asarray(audio, np.float32).reshape(-1)])
        n = data.shape[0] // CHUNK
        probs = np.array([self.chunk_probability(data[i * CHUNK:(i + 1) * CHUNK])
                          for i in range(n)], np.float32)
        self._pending = data[n * CHUNK:]
        return probs


@dataclass
class VadConfig:
    """Hysteresis thresholds and durations (Silero's recommended shape)."""

    threshold: float = 0.5  # start of speech
    neg_threshold: float = 0.35  # end of speech once below this ...
    min_silence_ms: int = 500  # ... for this long (espeak and people pause between words)
    min_speech_ms: int = 250  # shorter bursts are clicks, not commands
    # kept either side of the speech: tight on purpose, because a grammar search without
    # filler words has to stretch the last word over trailing silence and can lose the
    # path (measured on the espeak set: pad 30 ms 3.7% WER, 150 ms 12%)
    pad_ms: int = 30


def speech_segments(probs: np.ndarray, config: VadConfig | None = None) -> list[tuple[int, int]]:
    """Chunk probabilities -> [(start_sample, end_sample)] of speech, padded, merged."""
    cfg = config or VadConfig()
    ms_per_chunk = 1000.0 * CHUNK / SAMPLE_RATE
    min_sil = max(1, int(round(cfg.min_silence_ms / ms_per_chunk)))
    min_speech = max(1, int(round(cfg.min_speech_ms / ms_per_chunk)))
    segments: list[tuple[int, int]] = []
    start, quiet = None, 0
    for i, p in enumerate(probs):
        if start is None:
            if p >= cfg.threshold:
                start, quiet = i, 0
        elif p < cfg.neg_threshold:
            quiet += 1
            if quiet >= min_sil:
                end = i - quiet + 1
                if end - start >= min_speech:
                    segments.append((start, end))
                start, quiet = None, 0
        else:
            quiet = 0
    if start is not None and len(probs) - start >= min_speech:
        segments.append((start, len(probs) - quiet))
    pad = int(cfg.pad_ms * SAMPLE_RATE / 1000)
    total = len(probs) * CHUNK
    return [(max(0, s * CHUNK - pad), min(total, e * CHUNK + pad)) for s, e in segments]


class UtteranceSegmenter:
    """Cuts utterances out of an audio stream: feed chunks, get finished utterances.

    Used by the speech node and the microphone loop; an utterance ends after
    ``min_silence_ms`` of non-speech, or at ``max_utterance_s`` whatever happens.
    """

    def __init__(self, vad: SileroVad | None = None, config: VadConfig | None = None,
                 max_utterance_s: float = 10.0) -> None:
        self.vad = vad or SileroVad()
        self.config = config or VadConfig()
        self.max_samples = int(max_utterance_s * SAMPLE_RATE)
        self._ms_chunk = 1000.0 * CHUNK / SAMPLE_RATE
        self.reset()

    def reset(self) -> None:
        self.vad.reset()
        self._history = np.zeros(0, np.float32)  # pre-roll + current utterance
        self._in_speech = False
        self._quiet = 0
        self._speech_chunks = 0
        self._offset = 0  # stream samples consumed (for timestamps)
        self._utt_start = 0

    def feed(self, audio: np.ndarray) -> list[tuple[float, np.ndarray]]:
        """Add 16 kHz float32 samples; returns [(start_seconds, utterance)] completed."""
        cfg = self.config
        pad = int(cfg.pad_ms * SAMPLE_RATE / 1000)
        min_sil = max(1, int(round(cfg.min_silence_ms / self._ms_chunk)))
        min_speech = max(1, int(round(cfg.min_speech_ms / self._ms_chunk)))
        audio = np.asarray(audio, np.float32).reshape(-1)
        done: list[tuple[float, np.ndarray]] = []
        pending_before = self.vad._pending.shape[0]
        probs = self.vad.probabilities(audio)
        stream = np.concatenate([self._history, audio])
        base = self._offset - self._history.shape[0]  # stream index of stream[0]
        consumed_end = self._offset - pending_before  # first sample of first new chunk
        for k, p in enumerate(probs):
            chunk_start = consumed_end + k * CHUNK
            if not self._in_speech:
                if p >= cfg.threshold:
                    self._in_speech, self._quiet, self._speech_chunks = True, 0, 1
                    self._utt_start = max(base, chunk_start - pad)
                continue
            self._speech_chunks += 1
            self._quiet = self._quiet + 1 if p < cfg.neg_threshold else 0
            end = chunk_start + CHUNK
            if self._quiet >= min_sil or end - self._utt_start >= self.max_samples:
                if self._speech_chunks - self._quiet >= min_speech:
                    stop = min(end - (self._quiet - 1) * CHUNK + pad, base + stream.shape[0])
                    done.append((self._utt_start / SAMPLE_RATE,
                                 stream[self._utt_start - base:stop - base].copy()))
                self._in_speech = False
        self._offset += audio.shape[0]
        if self._in_speech:
            keep_from = self._utt_start
        else:
            keep_from = max(base, self._offset - pad - CHUNK)
        self._history = stream[keep_from - base:].copy()
        return done

    def flush(self) -> list[tuple[float, np.ndarray]]:
        """End of stream: return the utterance in progress, if it is long enough."""
        out: list[tuple[float, np.ndarray]] = []
        min_speech = max(1, int(round(self.config.min_speech_ms / self._ms_chunk)))
        if self._in_speech and self._speech_chunks - self._quiet >= min_speech:
            out.append((self._utt_start / SAMPLE_RATE, self._history.copy()))
        self.reset()
        return out
