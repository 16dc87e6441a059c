"""The one interface every speech-to-text backend implements, and the result types."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np

from spatial_llava_ros.speech.grammar import SceneVocabulary


@dataclass
class Recognition:
    """What a backend heard in one utterance (16 kHz mono), before rejection."""

    text: str
    confidence: float  # 0..1, the backend's own measure (see each backend)
    words: list[str] = field(default_factory=list)
    details: dict = field(default_factory=dict)  # backend-specific scores, for the bench


@dataclass
class Transcript:
    """The answer to "what did the user say?".

    ``heard`` is False for silence, noise and low-confidence speech: then ``text`` is ''
    and ``reason`` says why, so no caller can mistake a guess for a command.
    """

    text: str
    confidence: float
    heard: bool
    raw_text: str = ''
    backend: str = ''
    reason: str = ''
    start_s: float = 0.0
    end_s: float = 0.0

    @property
    def action(self) -> str:
        """go_to | pick_up | find | where_is | mark | '' (SpatialQuery.action)."""
        from spatial_llava_ros.speech.command import parse_command

        return parse_command(self.text).action if self.heard else ''

    @property
    def query(self) -> str:
        """What the resolver is asked: the referring expression without the verb
        ("the chair left of the table"), or "mark 3"; '' when nothing was heard."""
        from spatial_llava_ros.speech.command import parse_command

        if not self.heard:
            return ''
        command = parse_command(self.text)
        if command.mark_id is not None:  # "go to mark three": the verb is in `action`
            return f'mark {command.mark_id}'
        return command.expression or command.text

    def to_dict(self) -> dict:
        return {'text': self.text, 'query': self.query, 'action': self.action,
                'confidence': round(float(self.confidence), 4), 'heard': self.heard,
                'raw_text': self.raw_text, 'backend': self.backend, 'reason': self.reason,
                'start_s': round(self.start_s, 3), 'end_s': round(self.end_s, 3)}


class SpeechBackend(ABC):
    """A recogniser. ``set_vocabulary(None)`` = free decoding; a vocabulary = scene-aware."""

    name: str = ''

    @abstractmethod
    def set_vocabulary(self, vocabulary: SceneVocabulary | None) -> None:
        """Constrain (or bias) decoding to commands over these words; rebuilt per scene."""

    @abstractmethod
    def recognize(self, audio: np.ndarray) -> Recognition:
        """Decode one utterance: float32 16 kHz mono in [-1, 1]."""
