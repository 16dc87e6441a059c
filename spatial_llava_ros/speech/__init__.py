"""Spoken commands: offline speech-to-text, voice activity, scene-aware grammars.

``transcribe_file(path)`` is the one-call entry (used by ``spatial-llava transcribe`` and
``spatial-llava demo --speech``); :class:`SpeechRecognizer` keeps a backend loaded and its
grammar in step with the scene; :class:`UtteranceSegmenter` cuts utterances from streams.
Heavy pieces (pocketsphinx, onnxruntime, transformers) load on first use.
"""

from spatial_llava_ros.speech.backend import Recognition, SpeechBackend, Transcript
from spatial_llava_ros.speech.command import Command, parse_command, wer
from spatial_llava_ros.speech.grammar import SceneVocabulary, build_jsgf, default_vocabulary
from spatial_llava_ros.speech.recognizer import (
    SpeechRecognizer,
    make_backend,
    transcribe_file,
)

__all__ = ['Command', 'Recognition', 'SceneVocabulary', 'SpeechBackend', 'SpeechRecognizer',
           'Transcript', 'build_jsgf', 'default_vocabulary', 'make_backend', 'parse_command',
           'transcribe_file', 'wer']
