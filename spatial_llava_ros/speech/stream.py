"""Endless audio (ROS topic, microphone) -> one Transcript per utterance.

The node and the microphone loop both use this: a stream segmenter with its own VAD
state cuts utterances, the recogniser (which runs its own VAD pass to crop each one)
decodes them. Times in the transcripts are seconds since the stream started.
"""

from __future__ import annotations

import numpy as np

from spatial_llava_ros.speech.backend import Transcript
from spatial_llava_ros.speech.recognizer import SpeechRecognizer
from spatial_llava_ros.speech.vad import SileroVad, UtteranceSegmenter, VadConfig


class StreamTranscriber:
    """Feed 16 kHz mono chunks of any size; get Transcripts for finished utterances."""

    def __init__(self, recognizer: SpeechRecognizer, max_utterance_s: float = 10.0,
                 vad_config: VadConfig | None = None) -> None:
        self.recognizer = recognizer
        # its own VAD: the recogniser resets its VAD for every utterance it decodes,
        # which must not wipe the state the segmenter carries between chunks
        self.segmenter = UtteranceSegmenter(SileroVad(), vad_config, max_utterance_s)

    def feed(self, audio: np.ndarray) -> list[Transcript]:
        return [self._decode(start, utt) for start, utt in self.segmenter.feed(audio)]

    def flush(self) -> list[Transcript]:
        return [self._decode(start, utt) for start, utt in self.segmenter.flush()]

    def _decode(self, start_s: float, utterance: np.ndarray) -> Transcript:
        t = self.recognizer.transcribe(utterance)
        t.start_s += start_s
        t.end_s += start_s
        return t
