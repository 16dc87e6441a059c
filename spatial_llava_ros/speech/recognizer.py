"""Audio -> Transcript: conversion, voice activity, a backend, and rejection.

Three gates stand between noise and a made-up query: the VAD must find speech, the
backend must produce words, and its confidence must reach ``min_confidence``. Only then
is ``heard`` True. The default is scene-aware decoding (a grammar over the scene's words,
or every category the generator knows when no scene is given), because that is the one
that works: see docs/speech.md for free vs scene-aware figures.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from spatial_llava_ros.errors import InputError
from spatial_llava_ros.speech.audio import SAMPLE_RATE, load_audio, to_model_rate
from spatial_llava_ros.speech.backend import SpeechBackend, Transcript
from spatial_llava_ros.speech.command import parse_command
from spatial_llava_ros.speech.grammar import SceneVocabulary, default_vocabulary
from spatial_llava_ros.speech.vad import SileroVad, VadConfig, speech_segments

BACKENDS = ('pocketsphinx', 'whisper')
# (backend, scene-aware) -> confidence below which a hypothesis is "no command heard";
# chosen on the development sets (seeds 0-2), reported on held-out seeds (docs/speech.md).
DEFAULT_MIN_CONFIDENCE = {('pocketsphinx', True): 0.75, ('pocketsphinx', False): 0.1,
                          ('whisper', True): 0.5, ('whisper', False): 0.5}
MIN_SPEECH_S = 0.3


def make_backend(name: str = 'pocketsphinx', model_dir: str | Path | None = None,
                 device: str | None = None) -> SpeechBackend:
    """Build a backend by name; Whisper needs ``model_dir`` (a local transformers dir)."""
    if name == 'pocketsphinx':
        from spatial_llava_ros.speech.pocketsphinx_backend import PocketsphinxBackend

        return PocketsphinxBackend(model_dir)
    if name == 'whisper':
        from spatial_llava_ros.speech.whisper_backend import WhisperBackend

        return WhisperBackend(model_dir, device=device)
    raise InputError(f'unknown speech backend {name!r}; choose one of {", ".join(BACKENDS)}')


def as_vocabulary(scene_vocabulary: object) -> SceneVocabulary:
    """A SceneVocabulary, a Scene (anything with ``.objects``), or None (-> default)."""
    if scene_vocabulary is None:
        return default_vocabulary()
    if isinstance(scene_vocabulary, SceneVocabulary):
        return scene_vocabulary
    if hasattr(scene_vocabulary, 'objects'):
        return SceneVocabulary.from_scene(scene_vocabulary)
    raise InputError(f'scene_vocabulary must be a SceneVocabulary, a Scene or None; '
                     f'got {type(scene_vocabulary).__name__}')


class SpeechRecognizer:
    """Keeps a loaded backend and the current scene grammar; transcribes utterances."""

    def __init__(self, backend: str | SpeechBackend = 'pocketsphinx',
                 model_dir: str | Path | None = None, scene_aware: bool = True,
                 vocabulary: object = None, min_confidence: float | None = None,
                 vad: SileroVad | None = None, vad_config: VadConfig | None = None,
                 device: str | None = None) -> None:
        self.backend = (backend if isinstance(backend, SpeechBackend)
                        else make_backend(backend, model_dir, device))
        self.scene_aware = scene_aware
        self.min_confidence = (self.default_threshold(self.backend.name, scene_aware)
                               if min_confidence is None else float(min_confidence))
        self._vad = vad
        self.vad_config = vad_config or VadConfig()
        self.vocabulary: SceneVocabulary | None = None
        self.set_vocabulary(vocabulary if scene_aware else None)

    @staticmethod
    def default_threshold(backend: str, scene_aware: bool) -> float:
        return DEFAULT_MIN_CONFIDENCE.get((backend, scene_aware), 0.5)

    @property
    def vad(self) -> SileroVad:
        if self._vad is None:
            self._vad = SileroVad()
        return self._vad

    def set_vocabulary(self, vocabulary: object) -> None:
        """New scene, new grammar; ignored (free decoding) when ``scene_aware`` is False."""
        if not self.scene_aware:
            self.backend.set_vocabulary(None)
            return
        self.vocabulary = as_vocabulary(vocabulary)
        self.backend.set_vocabulary(self.vocabulary)

    def set_scene(self, scene: object, mark_ids: list[int] | None = None) -> None:
        """Rebuild the grammar from a Scene's objects (and the marks on screen)."""
        self.set_vocabulary(SceneVocabulary.from_scene(scene, mark_ids))

    def transcribe(self, audio: np.ndarray, rate: int = SAMPLE_RATE,
                   use_vad: bool = True) -> Transcript:
        """One clip (any rate, mono or stereo) -> Transcript; silence/noise -> heard=False."""
        samples = to_model_rate(audio, rate)
        name = self.backend.name
        if samples.shape[0] < int(MIN_SPEECH_S * SAMPLE_RATE):
            return Transcript('', 0.0, False, backend=name,
                              reason=f'clip too short: {samples.shape[0] / SAMPLE_RATE:.2f} s')
        start, end = 0, samples.shape[0]
        if use_vad:
            self.vad.reset()
            probs = self.vad.probabilities(samples)
            segments = speech_segments(probs, self.vad_config)
            if not segments:
                peak = float(probs.max()) if probs.size else 0.0
                return Transcript('', 0.0, False, backend=name,
                                  reason=f'no speech (VAD peak {peak:.2f} < '
                                  f'{self.vad_config.threshold:.2f})')
            start, end = segments[0][0], segments[-1][1]
        result = self.backend.recognize(samples[start:end])
        span = dict(start_s=start / SAMPLE_RATE, end_s=end / SAMPLE_RATE)
        if not result.text:
            return Transcript('', 0.0, False, backend=name, reason='no words recognised', **span)
        command = parse_command(result.text)
        if not command.text:
            return Transcript('', result.confidence, False, raw_text=result.text, backend=name,
                              reason='no words after normalisation', **span)
        if result.confidence < self.min_confidence:
            return Transcript('', result.confidence, False, raw_text=command.text, backend=name,
                              reason=f'low confidence {result.confidence:.2f} < '
                              f'{self.min_confidence:.2f}', **span)
        return Transcript(command.text, result.confidence, True, raw_text=result.text,
                          backend=name, **span)


_CACHE: dict[tuple, SpeechRecognizer] = {}


def transcribe_file(path: str | Path, scene_vocabulary: object = None,
                    backend: str = 'pocketsphinx', model_dir: str | Path | None = None,
                    scene_aware: bool = True) -> Transcript:
    """WAV file -> Transcript (text, confidence, heard). Used by ``transcribe`` and ``demo``.

    ``scene_vocabulary``: a SceneVocabulary or Scene to build the grammar from; None uses
    every category the scene generator knows. The loaded recogniser is cached per backend.
    """
    audio = load_audio(path)
    key = (backend, str(model_dir), scene_aware)
    recognizer = _CACHE.get(key)
    if recognizer is None:
        recognizer = SpeechRecognizer(backend, model_dir, scene_aware=scene_aware,
                                      vocabulary=scene_vocabulary)
        _CACHE[key] = recognizer
    elif scene_aware:
        recognizer.set_vocabulary(scene_vocabulary)
    return recognizer.transcribe(audio, SAMPLE_RATE)
