"""Speech node: its ROS-free logic everywhere, the rclpy node only where ROS 2 is."""

import json

from spatial_llava_ros.speech.backend import Transcript
from spatial_llava_ros.speech.ros_bridge import (
    ACTION_TO_QUERY,
    LOCATE,
    MANIPULATE,
    NAVIGATE,
    query_fields,
    transcript_json,
    vocabulary_from_marks,
)


def test_action_constants_match_the_pipeline():
    from spatial_llava_ros import pipeline

    assert (LOCATE, NAVIGATE, MANIPULATE) == (pipeline.LOCATE, pipeline.NAVIGATE,
                                              pipeline.MANIPULATE)


def test_heard_command_becomes_query_fields():
    t = Transcript('go to the chair left of the table', 0.8, True)
    assert query_fields(t, 'map') == {'text': 'the chair left of the table',
                                      'action': NAVIGATE, 'target_frame': 'map'}
    assert query_fields(Transcript('pick up the red mug', 0.9, True))['action'] == MANIPULATE
    assert query_fields(Transcript('where is the lamp', 0.9, True))['action'] == LOCATE
    assert query_fields(Transcript('mark 3', 0.9, True))['text'] == 'mark 3'
    # the verb goes to `action`, the mark alone to the resolver (pipeline.named_mark)
    assert query_fields(Transcript('go to mark 12', 0.9, True)) == {
        'text': 'mark 12', 'action': NAVIGATE, 'target_frame': ''}
    assert set(ACTION_TO_QUERY.values()) == {LOCATE, NAVIGATE, MANIPULATE}


def test_nothing_heard_publishes_no_query():
    t = Transcript('', 0.0, False, reason='no speech (VAD peak 0.02 < 0.50)')
    assert query_fields(t) is None
    data = json.loads(transcript_json(t))
    assert data['heard'] is False and 'no speech' in data['reason']


def test_vocabulary_follows_the_marks():
    v = vocabulary_from_marks([3, 1, 2])
    assert v.mark_ids == [1, 2, 3] and 'chair' in v.categories  # no labels: all categories
    v = vocabulary_from_marks([1, 2], labels=['cup', 'trash_can'])
    assert v.categories == ['cup', 'trash can'] and v.mark_ids == [1, 2]
    v = vocabulary_from_marks([5], categories=['sofa '])
    assert v.categories == ['sofa'] and v.mark_ids == [5]


def test_speech_params_are_declared_data():
    from spatial_llava_ros.nodes.params import NODE_PARAMS, PCM_FORMATS, SPEECH_PARAMS
    from spatial_llava_ros.speech.ros_bridge import SAMPLE_FORMATS

    assert NODE_PARAMS['speech_node'] is SPEECH_PARAMS
    assert set(PCM_FORMATS) == set(SAMPLE_FORMATS)
    names = [p.name for p in SPEECH_PARAMS]
    assert {'audio_topic', 'sample_rate', 'backend', 'audio_msg_type'} <= set(names)
    assert all(p.check(p.default) is None for p in SPEECH_PARAMS)
