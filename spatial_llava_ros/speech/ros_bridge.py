"""The speech node's logic without ROS: audio message payloads -> samples, the marks in
view -> a vocabulary, a Transcript -> SpatialQuery fields. Tested everywhere; the node
(spatial_llava_ros/nodes/speech_node.py) only moves messages in and out."""

from __future__ import annotations

import json
from collections.abc import Iterable

import numpy as np

from spatial_llava_ros.errors import InputError
from spatial_llava_ros.speech.backend import Transcript
from spatial_llava_ros.speech.grammar import SceneVocabulary, default_vocabulary

# SpatialQuery.action constants (msg/SpatialQuery.msg)
LOCATE, NAVIGATE, MANIPULATE = 0, 1, 2
ACTION_TO_QUERY = {'go_to': NAVIGATE, 'pick_up': MANIPULATE, 'find': LOCATE,
                   'where_is': LOCATE, 'mark': LOCATE, '': LOCATE}
SAMPLE_FORMATS = {'S16LE': np.dtype('<i2'), 'S32LE': np.dtype('<i4'),
                  'F32LE': np.dtype('<f4'), 'U8': np.dtype('u1')}


def decode_pcm(payload: bytes | bytearray | Iterable[int] | np.ndarray, sample_format: str,
               channels: int) -> np.ndarray:
    """Raw interleaved PCM (AudioData.data, UInt8MultiArray.data) -> (N,) or (N, ch)."""
    if sample_format not in SAMPLE_FORMATS:
        raise InputError(f'sample_format must be one of {sorted(SAMPLE_FORMATS)}; '
                         f'got {sample_format!r}')
    if channels < 1:
        raise InputError(f'channels must be >= 1; got {channels}')
    dtype = SAMPLE_FORMATS[sample_format]
    raw = bytes(payload) if not isinstance(payload, (bytes, bytearray)) else bytes(payload)
    frame = dtype.itemsize * channels
    if len(raw) % frame:
        raise InputError(f'{len(raw)} bytes is not a whole number of {channels}-channel '
                         f'{sample_format} frames ({frame} bytes each)')
    data = np.frombuffer(raw, dtype=dtype).astype(dtype.newbyteorder('='))
    return data.reshape(-1, channels) if channels > 1 else data


def decode_int16(values: Iterable[int] | np.ndarray, channels: int) -> np.ndarray:
    """std_msgs/Int16MultiArray.data (interleaved) -> int16 (N,) or (N, ch)."""
    data = np.asarray(values, dtype=np.int16)
    if channels < 1 or data.size % channels:
        raise InputError(f'{data.size} samples do not split into {channels} channels')
    return data.reshape(-1, channels) if channels > 1 else data


def vocabulary_from_marks(mark_ids: Iterable[int], labels: Iterable[str] = (),
                          categories: Iterable[str] = ()) -> SceneVocabulary:
    """Marks on screen (+ detector labels, or configured categories) -> vocabulary.

    Without labels or configured categories every category the generator knows stays in
    the grammar (the SoM image has numbers, not names); the mark numbers always update.
    """
    vocab = default_vocabulary()
    named = [c.strip().lower().replace('_', ' ') for c in list(labels) + list(categories)
             if c and c.strip()]
    if named:
        vocab.categories = list(dict.fromkeys(named))
    vocab.mark_ids = sorted({int(m) for m in mark_ids if 0 <= int(m) <= 99})
    return vocab


def query_fields(transcript: Transcript, target_frame: str = '') -> dict | None:
    """SpatialQuery fields for a heard command; None when nothing was heard."""
    if not transcript.heard or not transcript.query:
        return None
    return {'text': transcript.query, 'action': ACTION_TO_QUERY.get(transcript.action, LOCATE),
            'target_frame': target_frame}


def transcript_json(transcript: Transcript) -> str:
    """The raw transcript with its confidence, for the ``speech/transcript`` String topic."""
    return json.dumps(transcript.to_dict())
