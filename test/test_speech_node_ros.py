"""The speech node in-process with real rclpy (skipped without ROS 2): a spoken command on
the audio topic becomes one SpatialQuery, and bad audio is dropped with the node still up.

The audio is espeak-ng speech (no recordings can be downloaded), published as
std_msgs/Int16MultiArray chunks at 22.05 kHz, as a microphone driver would stream it.
"""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
from needs import needs

rclpy = pytest.importorskip('rclpy', reason='needs ROS 2 (rclpy)')
pytest.importorskip('spatial_llava_ros.msg', reason='the generated interfaces are missing: '
                    'colcon build the package first')

from rclpy.executors import MultiThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from std_msgs.msg import Int16MultiArray, String  # noqa: E402

from spatial_llava_ros.msg import Mark, MarkArray, SpatialQuery  # noqa: E402
from spatial_llava_ros.nodes.speech_node import SpeechNode  # noqa: E402
from spatial_llava_ros.speech.audio import read_wav  # noqa: E402
from spatial_llava_ros.speech.testset import espeak_available, synthesise  # noqa: E402

pytestmark = [needs('pocketsphinx', 'silero_vad'),
              pytest.mark.skipif(espeak_available() is None,
                                 reason='espeak-ng not installed (apt-get install espeak-ng)')]
NAMESPACE = 'speech_test'
RATE = 22050


def _spoken(text: str, tmp_path) -> np.ndarray:
    synthesise(text, 'en-us', 150, tmp_path / 'cmd.wav')
    samples, rate = read_wav(tmp_path / 'cmd.wav')
    assert rate == RATE
    pad = np.zeros(RATE // 2, np.float32)
    audio = np.concatenate([pad, samples, pad, pad, pad])
    return np.clip(audio * 32767, -32768, 32767).astype(np.int16)


def _wait(cond, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def test_spoken_command_becomes_one_query_and_bad_audio_is_dropped(tmp_path):
    audio = _spoken('go to mark two', tmp_path)
    context = rclpy.Context()
    rclpy.init(context=context)
    node = SpeechNode(context=context, namespace=NAMESPACE, parameter_overrides=[
        Parameter('sample_rate', value=RATE), Parameter('audio_msg_type',
                                                        value='std_msgs/Int16MultiArray')])
    mic = rclpy.create_node('speech_test_mic', context=context, namespace=NAMESPACE)
    queries, transcripts = [], []
    mic.create_subscription(SpatialQuery, 'spatial_query', queries.append, 10)
    mic.create_subscription(String, 'speech/transcript', transcripts.append, 10)
    audio_pub = mic.create_publisher(Int16MultiArray, 'audio', 50)
    marks_pub = mic.create_publisher(MarkArray, 'marks', 2)
    executor = MultiThreadedExecutor(num_threads=3, context=context)
    executor.add_node(node)
    executor.add_node(mic)
    threading.Thread(target=executor.spin, daemon=True).start()
    try:
        assert _wait(lambda: audio_pub.get_subscription_count() > 0
                     and marks_pub.get_subscription_count() > 0, 5.0)
        marks_pub.publish(MarkArray(marks=[Mark(id=i) for i in (1, 2, 3)]))
        time.sleep(0.3)
        # a stereo setting on a mono odd-length chunk: dropped with a warning, not a crash
        node.set_parameters([Parameter('channels', value=2)])
        audio_pub.publish(Int16MultiArray(data=[1, 2, 3]))
        time.sleep(0.2)
        node.set_parameters([Parameter('channels', value=1)])
        chunk = RATE // 10  # 100 ms, as a microphone driver sends
        for start in range(0, audio.size, chunk):
            audio_pub.publish(Int16MultiArray(data=audio[start:start + chunk].tolist()))
            time.sleep(0.01)
        assert _wait(lambda: queries, 30.0), [t.data for t in transcripts]
        time.sleep(0.5)
    finally:
        executor.shutdown()
        node.close()
        node.destroy_node()
        mic.destroy_node()
        rclpy.shutdown(context=context)
    assert len(queries) == 1
    q = queries[0]
    assert (q.text, q.action) == ('mark 2', SpatialQuery.NAVIGATE)
    heard = [json.loads(t.data) for t in transcripts]
    assert any(h['heard'] and h['text'] == 'go to mark 2' for h in heard), heard
