"""Speech node: audio in, SpatialQuery out, so spoken and typed queries meet in one place.

Subscribes
- ``audio`` (``audio_common_msgs/AudioData``: raw interleaved PCM in ``data``; format from
  the ``sample_rate`` / ``channels`` / ``sample_format`` parameters). Fallback when
  audio_common_msgs is not installed, or ``audio_msg_type`` says so:
  ``std_msgs/Int16MultiArray`` (interleaved int16 samples) or ``std_msgs/UInt8MultiArray``
  (raw PCM bytes, like AudioData). Any rate / channel count is converted to 16 kHz mono.
- ``marks`` (``spatial_llava_ros/MarkArray``): mark numbers (and detector labels) in view;
  the grammar is rebuilt from them, so "mark 7" is only accepted while mark 7 exists.

Publishes
- ``spatial_query`` (``spatial_llava_ros/SpatialQuery``, RELIABLE): one per heard command;
  ``text`` = the referring expression ("the chair left of the table", or "mark 3"),
  ``action`` = NAVIGATE for "go to", MANIPULATE for "pick up", LOCATE otherwise.
- ``speech/transcript`` (``std_msgs/String``, JSON): every utterance the VAD cut out, with
  text, confidence, heard and the reason when rejected.

Voice activity (Silero) cuts utterances out of the stream; recognition runs on a worker
thread, never in the audio callback.
"""

from __future__ import annotations

import queue
import threading

from rclpy.node import Node
from std_msgs.msg import Int16MultiArray, String, UInt8MultiArray

from spatial_llava_ros.errors import SpatialLlavaError
from spatial_llava_ros.msg import MarkArray, SpatialQuery
from spatial_llava_ros.nodes.params import AUDIO_TYPES, SPEECH_PARAMS
from spatial_llava_ros.nodes.ros_common import COMMAND_QOS, declare_specs, param, spin
from spatial_llava_ros.speech.audio import to_model_rate
from spatial_llava_ros.speech.recognizer import SpeechRecognizer
from spatial_llava_ros.speech.ros_bridge import (
    decode_int16,
    decode_pcm,
    query_fields,
    transcript_json,
    vocabulary_from_marks,
)
from spatial_llava_ros.speech.stream import StreamTranscriber

try:  # audio_common (ros-<distro>-audio-common-msgs) is optional
    from audio_common_msgs.msg import AudioData
except ImportError:  # pragma: no cover - depends on the ROS install
    AudioData = None

class SpeechNode(Node):
    """Audio topic -> VAD -> recogniser (worker thread) -> SpatialQuery + transcript."""

    def __init__(self, **kwargs) -> None:
        super().__init__('speech_node', **kwargs)
        declare_specs(self, SPEECH_PARAMS)
        min_conf = float(param(self, 'min_confidence'))
        self._recognizer = SpeechRecognizer(param(self, 'backend'),
                                            param(self, 'model_dir') or None,
                                            min_confidence=None if min_conf < 0 else min_conf)
        self._stream = StreamTranscriber(self._recognizer,
                                         max_utterance_s=param(self, 'max_utterance_s'))
        self._query_pub = self.create_publisher(SpatialQuery, param(self, 'query_topic'),
                                                COMMAND_QOS)
        self._text_pub = self.create_publisher(String, param(self, 'transcript_topic'),
                                               COMMAND_QOS)
        kind = param(self, 'audio_msg_type')
        if kind == 'auto':
            kind = AUDIO_TYPES[1] if AudioData is not None else AUDIO_TYPES[2]
        if kind == AUDIO_TYPES[1] and AudioData is None:
            raise SpatialLlavaError('audio_msg_type is audio_common_msgs/AudioData but '
                                    'audio_common_msgs is not installed')
        msg_type = {AUDIO_TYPES[1]: AudioData, AUDIO_TYPES[2]: Int16MultiArray,
                    AUDIO_TYPES[3]: UInt8MultiArray}[kind]
        self._kind = kind
        self._marks: tuple[int, ...] = ()
        self._work: queue.Queue = queue.Queue(maxsize=200)
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._run, daemon=True)
        self._worker.start()
        self.create_subscription(msg_type, param(self, 'audio_topic'), self._on_audio, 50)
        self.create_subscription(MarkArray, param(self, 'marks_topic'), self._on_marks, 2)
        self.get_logger().info(f'speech: {self._recognizer.backend.name}, audio {kind} on '
                               f'{param(self, "audio_topic")}')

    def _on_audio(self, msg) -> None:
        try:
            channels = int(param(self, 'channels'))
            if self._kind == AUDIO_TYPES[2]:
                samples = decode_int16(msg.data, channels)
            else:
                samples = decode_pcm(msg.data, param(self, 'sample_format'), channels)
            audio = to_model_rate(samples, int(param(self, 'sample_rate')))
        except SpatialLlavaError as exc:
            self.get_logger().warning(f'audio message dropped: {exc}')
            return
        try:
            self._work.put_nowait(('audio', audio))
        except queue.Full:
            self.get_logger().warning('speech worker behind: audio chunk dropped')

    def _on_marks(self, msg) -> None:
        ids = tuple(int(m.id) for m in msg.marks)
        labels = tuple(m.label for m in msg.marks if m.label)
        if ids != self._marks:
            self._marks = ids
            self._work.put(('marks', (ids, labels)))

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                kind, item = self._work.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                if kind == 'marks':
                    cats = [c for c in str(param(self, 'categories')).split(',') if c.strip()]
                    self._recognizer.set_vocabulary(vocabulary_from_marks(item[0], item[1],
                                                                          cats))
                    continue
                for transcript in self._stream.feed(item):
                    self._publish(transcript)
            except SpatialLlavaError as exc:
                self.get_logger().error(f'speech: {exc}')

    def _publish(self, transcript) -> None:
        self._text_pub.publish(String(data=transcript_json(transcript)))
        fields = query_fields(transcript, str(param(self, 'target_frame')))
        if fields is None:
            self.get_logger().info(f'no command heard: {transcript.reason}')
            return
        msg = SpatialQuery()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.text, msg.action, msg.target_frame = (fields['text'], fields['action'],
                                                  fields['target_frame'])
        self._query_pub.publish(msg)
        self.get_logger().info(f'heard "{transcript.text}" ({transcript.confidence:.2f})')

    def close(self) -> None:
        self._stop.set()
        self._worker.join(timeout=2.0)


def main(args=None) -> int:
    return spin(SpeechNode, num_threads=2, args=args)


if __name__ == '__main__':
    main()
