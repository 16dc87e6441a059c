"""Every node parameter as data: name, default, description, range.

The nodes declare these with ParameterDescriptors and validate changes with ``check``;
config/params.yaml holds the same defaults (a test keeps the two in step), and
docs/ros.md documents them. Plain Python, so all of it is tested without ROS 2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from spatial_llava_ros.errors import InputError
from spatial_llava_ros.marks.placement import PLACEMENTS

PROPOSAL_SOURCES = ('depth', 'color', 'detections', 'sam')
MARK_STYLES = ('number', 'contour', 'box', 'tint')
AUDIO_TYPES = ('auto', 'audio_common_msgs/AudioData', 'std_msgs/Int16MultiArray',
               'std_msgs/UInt8MultiArray')
PCM_FORMATS = ('S16LE', 'S32LE', 'F32LE', 'U8')  # speech.ros_bridge.SAMPLE_FORMATS' keys
SPEECH_BACKENDS = ('pocketsphinx', 'whisper')
RESOLVER_BACKENDS = ('local', 'remote')
REMOTE_SCORING = ('auto', 'systemone', 'logprobs', 'generate')  # model.remote.SCORING_MODES


@dataclass(frozen=True)
class ParamSpec:
    """One parameter. The type is the default's type (bool, int, float or str)."""

    name: str
    default: bool | int | float | str
    description: str
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] | None = None
    read_only: bool = False  # only read at configure / start-up

    @property
    def type(self) -> type:
        return type(self.default)

    def check(self, value) -> str | None:
        """Why ``value`` is not acceptable, or None when it is."""
        want = self.type
        if want is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if type(value) is not want:
            return (f'{self.name} must be a {want.__name__}, got {type(value).__name__} '
                    f'{value!r}')
        if want is float and not math.isfinite(value):
            return f'{self.name} must be finite, got {value}'
        if self.min is not None and value < self.min:
            return f'{self.name} must be >= {self.min}, got {value}'
        if self.max is not None and value > self.max:
            return f'{self.name} must be <= {self.max}, got {value}'
        if self.choices is not None and value not in self.choices:
            return f'{self.name} must be one of {list(self.choices)}, got {value!r}'
        return None


def _topic(name: str, default: str, what: str) -> ParamSpec:
    return ParamSpec(name, default, f'{what} (relative names are resolved in the node '
                     'namespace; remap in launch)', read_only=True)


MARKER_PARAMS: tuple[ParamSpec, ...] = (
    _topic('color_topic', 'image', 'colour image in (sensor_msgs/Image)'),
    _topic('depth_topic', 'depth', 'depth image in, registered to colour (16UC1 mm or 32FC1 m)'),
    _topic('camera_info_topic', 'camera_info', 'camera info of the colour image'),
    _topic('detections_topic', 'detections', 'optional vision_msgs/Detection2DArray in'),
    _topic('marked_image_topic', 'marked_image', 'marked image out (rgb8, same header)'),
    _topic('marks_topic', 'marks', 'spatial_llava_ros/MarkArray out (same header)'),
    ParamSpec('use_depth', True, 'pair colour with depth + camera_info; false = colour-only '
              '(marks then have no 3D centroid)', read_only=True),
    ParamSpec('use_detections', False, 'also subscribe to detections and use their boxes as '
              'proposals', read_only=True),
    ParamSpec('proposals', 'depth', 'segmenter: depth | color | detections | sam',
              choices=PROPOSAL_SOURCES, read_only=True),
    ParamSpec('sam_path', '', 'local directory of a SAM checkpoint (proposals: sam)',
              read_only=True),
    ParamSpec('style', 'number', 'how marks are drawn: number | contour | box | tint',
              choices=MARK_STYLES, read_only=True),
    ParamSpec('text_height_336', 20.0, "digit height in px after the model's resize to 336; "
              "match the model's som_settings.json (20 for the shipped model)", 6.0, 48.0,
              read_only=True),
    ParamSpec('label_placement', 'interior', "where numbers go: interior (on the object) | "
              "beside (next to it) | auto (interior unless it would hide a third of the "
              "object; labels never touch); match the model's som_settings.json",
              choices=PLACEMENTS, read_only=True),
    ParamSpec('min_area', 120, 'smallest mask kept, pixels', 1, 1_000_000, read_only=True),
    ParamSpec('max_marks', 40, 'most marks per frame', 1, 99, read_only=True),
    ParamSpec('centroid_trim', 0.1, 'trimmed-mean fraction for 3D centroids (0.5 = median)',
              0.0, 0.5, read_only=True),
    ParamSpec('sync_slop', 0.05, 'ApproximateTimeSynchronizer slop, seconds', 0.001, 1.0,
              read_only=True),
    ParamSpec('sync_queue_size', 5, 'ApproximateTimeSynchronizer queue size', 1, 100,
              read_only=True),
    ParamSpec('max_frame_age', 0.5, 'frames older than this (s) when the marker is free are '
              'dropped, never queued; 0 = keep all', 0.0, 60.0),
    ParamSpec('camera_frame', '', 'optical frame id for the marks; empty = the camera_info '
              '(or image) header frame_id'),
    ParamSpec('no_frame_warning', 5.0, 'warn when no synchronised camera frame came for this '
              'many seconds (wall time; then at most every 30 s); 0 = never', 0.0, 3600.0,
              read_only=True),
)

RESOLVER_PARAMS: tuple[ParamSpec, ...] = (
    _topic('query_topic', 'spatial_query', 'spatial_llava_ros/SpatialQuery in'),
    _topic('result_topic', 'spatial_result', 'spatial_llava_ros/SpatialResult out, one per query'),
    _topic('goal_topic', 'goal_pose', 'navigation goal out (geometry_msgs/PoseStamped)'),
    _topic('target_pose_topic', 'target_pose', 'manipulation target pose out (PoseStamped)'),
    _topic('answer_image_topic', 'answer_image', "the answered frame out (rgb8): the chosen "
           "mark boxed, the query and answer written on it; '' = off"),
    _topic('marked_image_topic', 'marked_image', 'marked image in (from the marker node)'),
    _topic('marks_topic', 'marks', 'MarkArray in (from the marker node)'),
    _topic('action_name', 'resolve_spatial_query', 'ResolveSpatialQuery action server'),
    _topic('nav_action', 'navigate_to_pose', 'Nav2 NavigateToPose action server'),
    ParamSpec('model_path', '', 'local Spatial-LLaVA checkpoint directory (transformers '
              "format, or a PEFT adapter on a local base); '' = the model shipped in the "
              'package (spatial_llava_ros/data/default_model)', read_only=True),
    ParamSpec('device', '', "torch device: '' = cuda if available else cpu", read_only=True),
    ParamSpec('dtype', '', "torch dtype: '' = bf16/fp16 on CUDA, float32 on CPU",
              read_only=True),
    ParamSpec('abstain_threshold', 0.0, 'answer success=false (abstain) when the best mark '
              'has a lower probability', 0.0, 1.0),
    ParamSpec('target_frame', 'map', 'fixed frame of target_point and goal_pose'),
    ParamSpec('base_frame', 'base_link', "robot base frame (stand-off line starts at its "
              "origin); '' = use the camera position"),
    ParamSpec('standoff', 0.8, 'navigation goal distance before the target, metres', 0.0,
              10.0),
    ParamSpec('max_frame_age', 1.0, 'a query on a frame older than this (s) fails with '
              'stale_frame; 0 = no limit', 0.0, 3600.0),
    ParamSpec('tf_timeout', 0.3, 'how long a tf lookup at the frame stamp may wait, seconds',
              0.0, 10.0),
    ParamSpec('navigate', False, 'send NAVIGATE goals to Nav2 NavigateToPose'),
    ParamSpec('nav_server_timeout', 2.0, 'how long to wait for the Nav2 action server, s',
              0.0, 60.0),
    ParamSpec('query_queue_size', 4, 'queries waiting for the model; when full the oldest is '
              'dropped and answered queue_full', 1, 1000, read_only=True),
    ParamSpec('frames_kept', 5, 'marked frames kept for the resolver', 1, 100, read_only=True),
    ParamSpec('autostart', False, 'configure, then activate, as soon as the node spins '
              '(bringup.launch.py sets it); false = wait for ros2 lifecycle set',
              read_only=True),
    ParamSpec('backend', 'local', 'local: load model_path in this process | remote: ask the '
              'OpenAI-compatible server at server_url (vLLM, SGLang, Ollama, transformers '
              'serve)', choices=RESOLVER_BACKENDS, read_only=True),
    ParamSpec('server_url', '', 'backend remote: http(s)://host:port[/v1] of the server',
              read_only=True),
    ParamSpec('server_model', '', "backend remote: the served model's name; '' = the first "
              'the server lists', read_only=True),
    ParamSpec('api_key_env', '', 'backend remote: NAME of the environment variable holding '
              "the API key ('' = none); the key itself never goes in a params file or a log",
              read_only=True),
    ParamSpec('timeout', 10.0, 'backend remote: seconds a query may take, retries included; '
              'then it fails with server_timeout', 0.1, 600.0, read_only=True),
    ParamSpec('max_in_flight', 4, 'backend remote: most HTTP requests this node has open at '
              'once (several nodes share one server)', 1, 256, read_only=True),
    ParamSpec('scoring', 'auto', 'backend remote: auto (probed once) | systemone | logprobs | '
              'generate (no probabilities)', choices=REMOTE_SCORING, read_only=True),
)

SPEECH_PARAMS: tuple[ParamSpec, ...] = (
    _topic('audio_topic', 'audio', 'audio in (AudioData, Int16MultiArray or UInt8MultiArray)'),
    ParamSpec('audio_msg_type', 'auto', 'audio message type; auto = AudioData when '
              'audio_common_msgs is installed, else Int16MultiArray', choices=AUDIO_TYPES,
              read_only=True),
    ParamSpec('sample_rate', 16000, 'sample rate of the audio topic, Hz', 8000, 192000),
    ParamSpec('channels', 1, 'interleaved channels in the audio topic', 1, 8),
    ParamSpec('sample_format', 'S16LE', 'PCM format of AudioData / UInt8MultiArray',
              choices=PCM_FORMATS),
    ParamSpec('backend', 'pocketsphinx', 'speech backend: pocketsphinx (grammar, offline, '
              'default) | whisper (model_dir)', choices=SPEECH_BACKENDS, read_only=True),
    ParamSpec('model_dir', '', 'local model directory (whisper); empty = backend default',
              read_only=True),
    ParamSpec('min_confidence', -1.0, 'reject below this; < 0 = backend default', -1.0, 1.0),
    ParamSpec('categories', '', 'comma-separated categories for the grammar; empty = '
              'detector labels from marks, else every category the generator knows'),
    ParamSpec('target_frame', '', 'SpatialQuery.target_frame (empty = resolver default)'),
    _topic('marks_topic', 'marks', 'MarkArray in (the grammar follows the marks in view)'),
    _topic('query_topic', 'spatial_query', 'SpatialQuery out, one per heard command'),
    _topic('transcript_topic', 'speech/transcript', 'std_msgs/String (JSON) out, one per '
           'utterance'),
    ParamSpec('max_utterance_s', 10.0, 'cut an utterance after this long, seconds', 1.0, 60.0,
              read_only=True),
)

NODE_PARAMS = {'marker_node': MARKER_PARAMS, 'resolver_node': RESOLVER_PARAMS,
               'speech_node': SPEECH_PARAMS}


def spec(specs: tuple[ParamSpec, ...], name: str) -> ParamSpec:
    for s in specs:
        if s.name == name:
            return s
    raise InputError(f'unknown parameter {name!r}; known: {[s.name for s in specs]}')


def defaults(specs: tuple[ParamSpec, ...]) -> dict:
    return {s.name: s.default for s in specs}


def check_values(specs: tuple[ParamSpec, ...], values: dict) -> dict:
    """Validate a dict of parameter values (e.g. a params.yaml section); returns it.

    Unknown names and bad values are InputErrors listing every problem.
    """
    problems = []
    for name, value in values.items():
        try:
            problem = spec(specs, name).check(value)
        except InputError as exc:
            problem = str(exc)
        if problem:
            problems.append(problem)
    if problems:
        raise InputError('; '.join(problems))
    return values
