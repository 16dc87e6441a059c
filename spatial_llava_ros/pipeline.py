"""From a marked frame and a query to a located target and a goal pose, with no ROS.

The one path that the resolver node, ``spatial-llava replay`` and the demo share:

    frame (marks + marked image, stamp, camera frame)
      -> resolver.score(image, mark ids, query)         which mark?
      -> the mark's centroid (camera optical frame)      where, in the camera?
      -> transforms(target_frame <- camera, stamp)      where, in the map?
      -> navigation / manipulation goal pose            where should the robot go?

Every way this can fail is returned as data (``SpatialOutcome.success`` False, a ``code``
and a one-line ``reason`` with the numbers), never raised, so the node can publish a
SpatialResult for every query and stay up.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from spatial_llava_ros.errors import InputError, ResolveError, SpatialLlavaError
from spatial_llava_ros.geometry.goals import (
    GoalPose,
    manipulation_pose,
    navigation_goal,
    robot_yaw,
)
from spatial_llava_ros.geometry.transforms import (  # noqa: F401 - re-exported
    TransformTable,
    TransformUnavailableError,
    check_transform,
    transform_points,
)

# SpatialQuery.action values (msg/SpatialQuery.msg)
LOCATE, NAVIGATE, MANIPULATE = 0, 1, 2
ACTION_NAMES = {LOCATE: 'locate', NAVIGATE: 'navigate', MANIPULATE: 'manipulate'}

# Failure codes: the first word of SpatialResult.reason, so clients can branch on it.
NO_FRAME = 'no_frame'
STALE_FRAME = 'stale_frame'
NO_MARKS = 'no_marks'
ABSTAIN = 'abstain'
NO_DEPTH = 'no_depth'
NO_TRANSFORM = 'no_transform'
BAD_QUERY = 'bad_query'
MODEL_ERROR = 'model_error'
GOAL_ERROR = 'goal_error'
# A served model's faults (model/remote.py raises them as RemoteError with one of these codes).
SERVER_UNREACHABLE = 'server_unreachable'
SERVER_TIMEOUT = 'server_timeout'
SERVER_ERROR = 'server_error'
BAD_ANSWER = 'bad_answer'
FAILURE_CODES = (NO_FRAME, STALE_FRAME, NO_MARKS, ABSTAIN, NO_DEPTH, NO_TRANSFORM, BAD_QUERY,
                 MODEL_ERROR, GOAL_ERROR, SERVER_UNREACHABLE, SERVER_TIMEOUT, SERVER_ERROR,
                 BAD_ANSWER)


class MarkLike(Protocol):
    """What the pipeline needs of a mark: ``marks.types.Mark`` or a ``MarkInfo``."""

    mark_id: int
    box: tuple[int, int, int, int]
    centroid: np.ndarray | None


class ScoresMarks(Protocol):
    """What the pipeline needs of a resolver: ``model.resolver.Resolver.score``."""

    def score(self, image: np.ndarray, mark_ids: list[int], query: str) -> Any: ...


# (target_frame, source_frame, stamp_ns) -> 4x4 target_T_source, or TransformUnavailableError
TransformLookup = Callable[[str, str, int], np.ndarray]


@dataclass(frozen=True)
class MarkInfo:
    """A mark without its mask: what a MarkArray message carries."""

    mark_id: int
    box: tuple[int, int, int, int]  # x_min, y_min, x_max, y_max (max exclusive), pixels
    anchor: tuple[int, int] = (0, 0)
    pixel_count: int = 0
    centroid: np.ndarray | None = None  # (3,) camera optical frame, metres
    label: str = ''


@dataclass
class FrameRecord:
    """One marked camera frame as the resolver sees it."""

    stamp_ns: int
    frame_id: str  # camera optical frame of the centroids
    image: np.ndarray  # (H, W, 3) uint8 RGB with the marks drawn
    marks: Sequence[MarkLike]
    # the unmarked frame and its label anchors (model/votes.py Renumberable), when known:
    # lets the resolver ask under other numberings (PipelineConfig.renumber_votes)
    renumber: Any = None

    @classmethod
    def from_marked_frame(cls, marked: Any, frame_id: str, stamp_ns: int | None = None,
                          marker: dict | None = None) -> FrameRecord:
        """Wrap a ``marks.types.MarkedFrame`` (its marks are used as they are); with the
        marker settings it was drawn with (``SomSettings.marker_kwargs``), a frame of
        numbers alone can also be renumbered for votes."""
        stamp = int(marked.stamp_ns if stamp_ns is None else stamp_ns)
        renumber = None
        if marker is not None and marker.get('style', 'number') == 'number':
            from spatial_llava_ros.model.votes import Renumberable

            renumber = Renumberable.from_marked(marked, float(marker['text_height_336']))
        return cls(stamp, frame_id, marked.image, list(marked.marks), renumber)

    @property
    def mark_ids(self) -> list[int]:
        return [int(m.mark_id) for m in self.marks]

    def mark(self, mark_id: int) -> MarkLike:
        for m in self.marks:
            if int(m.mark_id) == int(mark_id):
                return m
        raise ResolveError(f'no mark {mark_id} in frame {self.stamp_ns}; marks: {self.mark_ids}')


class FrameBuffer:
    """The last few marked frames, newest last; thread-safe (image callback vs. worker)."""

    def __init__(self, size: int = 5) -> None:
        if size < 1:
            raise InputError(f'frame buffer size must be >= 1, got {size}')
        self._frames: deque[FrameRecord] = deque(maxlen=size)
        self._lock = threading.Lock()

    def add(self, record: FrameRecord) -> bool:
        """Keep ``record`` unless it is older than the newest kept (out-of-order delivery)."""
        with self._lock:
            if self._frames and record.stamp_ns < self._frames[-1].stamp_ns:
                return False
            self._frames.append(record)
            return True

    def latest(self) -> FrameRecord | None:
        with self._lock:
            return self._frames[-1] if self._frames else None

    def nearest(self, stamp_ns: int) -> FrameRecord | None:
        """The kept frame whose stamp is closest to ``stamp_ns``."""
        with self._lock:
            if not self._frames:
                return None
            return min(self._frames, key=lambda r: abs(r.stamp_ns - stamp_ns))

    def clear(self) -> None:
        with self._lock:
            self._frames.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._frames)


@dataclass(frozen=True)
class PipelineConfig:
    """Parameters of the query -> goal path (node parameters of the same names)."""

    target_frame: str = 'map'  # fixed frame of target_point and goal_pose
    base_frame: str = 'base_link'  # the robot; '' = use the camera's position instead
    standoff: float = 0.8  # metres between the navigation goal and the target
    max_frame_age: float = 1.0  # seconds; older frames are stale. <= 0: no limit
    # numberings a frame is asked under, answers combined (model/votes.py); needs a frame
    # that knows its unmarked image (FrameRecord.renumber), else the one image is asked
    renumber_votes: int = 1

    def __post_init__(self) -> None:
        from spatial_llava_ros.model.votes import check_votes

        check_votes(self.renumber_votes)
        if not self.target_frame:
            raise InputError('target_frame must not be empty')
        if not math.isfinite(self.standoff) or self.standoff < 0:
            raise InputError(f'standoff must be a finite distance >= 0 m, got {self.standoff}')
        if not math.isfinite(self.max_frame_age):
            raise InputError(f'max_frame_age must be finite, got {self.max_frame_age}')


@dataclass(frozen=True)
class QueryRequest:
    """A query as received: SpatialQuery fields or an action goal."""

    text: str
    action: int = LOCATE
    target_frame: str = ''  # '' = PipelineConfig.target_frame
    stamp_ns: int = 0


@dataclass
class SpatialOutcome:
    """Everything a SpatialResult carries, as plain data."""

    query: str
    action: int
    success: bool
    code: str = ''  # one of FAILURE_CODES when success is False
    reason: str = ''  # '<code>: <one line with the numbers>' when success is False
    mark_id: int = -1
    confidence: float = 0.0
    ranked: list[tuple[int, float]] = field(default_factory=list)  # (mark id, p), best first
    target_camera: np.ndarray | None = None  # (3,) camera optical frame
    target_world: np.ndarray | None = None  # (3,) target_frame
    goal: GoalPose | None = None
    box: tuple[int, int, int, int] | None = None
    camera_frame: str = ''
    target_frame: str = ''
    frame_stamp_ns: int = 0
    frame_age: float = 0.0  # seconds between the frame and the resolution

    def fail(self, code: str, detail: str) -> SpatialOutcome:
        """Mark this outcome failed with ``code`` and a detail line; returns self."""
        self.success = False
        self.code = code
        self.reason = f'{code}: {detail}'
        return self

    def to_dict(self) -> dict:
        """JSON-ready form (what the CLI prints)."""
        def vec(v):
            return None if v is None else [round(float(x), 4) for x in v]

        def prob(p):  # NaN (a server that gave no probabilities) is JSON null
            return None if math.isnan(float(p)) else round(float(p), 4)
        return {
            'query': self.query, 'action': ACTION_NAMES.get(self.action, str(self.action)),
            'success': self.success, 'code': self.code, 'reason': self.reason,
            'mark_id': self.mark_id, 'confidence': prob(self.confidence),
            'scores': [[int(i), prob(p)] for i, p in self.ranked],
            'target_camera': vec(self.target_camera), 'target_world': vec(self.target_world),
            'goal': None if self.goal is None else {
                'frame_id': self.goal.frame_id, 'position': vec(self.goal.position),
                'orientation': vec(self.goal.orientation),
                'yaw': round(float(self.goal.yaw), 4)},
            'box': None if self.box is None else [int(v) for v in self.box],
            'camera_frame': self.camera_frame, 'target_frame': self.target_frame,
            'frame_stamp_ns': int(self.frame_stamp_ns), 'frame_age': round(self.frame_age, 4),
        }


def frame_age_seconds(frame_stamp_ns: int, now_ns: int) -> float:
    """Age of a frame; a frame stamped in the future (clock skew) counts as age 0."""
    return max(0.0, (int(now_ns) - int(frame_stamp_ns)) * 1e-9)


def named_mark(text: str) -> int | None:
    """The mark a query names outright ("mark 3", "go to mark number three"), else None.

    Such a query needs no model: the user read the number off the marked image. Parsed by
    the same rules as spoken commands (speech.command), so typed and spoken queries agree.
    """
    from spatial_llava_ros.speech.command import parse_command

    if not isinstance(text, str):
        return None
    return parse_command(text).mark_id


@dataclass
class NamedMark:
    """A Resolution-shaped answer for a query that names its mark (no model call)."""

    best_id: int
    confidence: float = 1.0
    abstained: bool = False
    reason: str = ''

    @property
    def ranked(self) -> list[tuple[int, float]]:
        return [(self.best_id, 1.0)]


def _ranked(resolution: Any) -> list[tuple[int, float]]:
    ranked = getattr(resolution, 'ranked', None)
    if ranked is None:
        scores = dict(resolution.scores)
        ranked = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))
    return [(int(i), float(p)) for i, p in ranked]


def resolve_query(query: QueryRequest, frame: FrameRecord | None, resolver: ScoresMarks,
                  transforms: TransformLookup, config: PipelineConfig,
                  now_ns: int) -> SpatialOutcome:
    """Answer one query on one frame; every failure is returned, not raised."""
    target_frame = query.target_frame or config.target_frame
    out = SpatialOutcome(query=query.text, action=int(query.action), success=False,
                         target_frame=target_frame)
    if not isinstance(query.text, str) or not query.text.strip():
        return out.fail(BAD_QUERY, f'the query text is empty ({query.text!r})')
    if query.action not in ACTION_NAMES:
        return out.fail(BAD_QUERY, f'action {query.action} is not one of '
                        f'{sorted(ACTION_NAMES)} (LOCATE, NAVIGATE, MANIPULATE)')
    if frame is None:
        return out.fail(NO_FRAME, 'no marked camera frame received yet')
    out.camera_frame = frame.frame_id
    out.frame_stamp_ns = int(frame.stamp_ns)
    out.frame_age = frame_age_seconds(frame.stamp_ns, now_ns)
    if config.max_frame_age > 0 and out.frame_age > config.max_frame_age:
        return out.fail(STALE_FRAME, f'newest camera frame is {out.frame_age:.2f} s old '
                        f'(max_frame_age {config.max_frame_age:.2f} s)')
    mark_ids = frame.mark_ids
    if not mark_ids:
        return out.fail(NO_MARKS, f'no marks in the frame at {frame.stamp_ns} ns '
                        '(no object proposals survived)')
    named = named_mark(query.text)
    if named is not None:  # "mark 3", "go to mark three": the user already chose
        if named not in mark_ids:
            return out.fail(BAD_QUERY, f'the query names mark {named}, but the frame at '
                            f'{frame.stamp_ns} ns has marks {sorted(mark_ids)}')
        resolution = NamedMark(named)
    else:
        try:
            if config.renumber_votes > 1 and frame.renumber is not None \
                    and hasattr(resolver, 'score_batch'):
                from spatial_llava_ros.model.votes import score_with_votes

                resolution = score_with_votes(resolver, frame.renumber, mark_ids,
                                              [query.text.strip()], config.renumber_votes)[0]
            else:
                resolution = resolver.score(frame.image, mark_ids, query.text.strip())
        except InputError as exc:
            return out.fail(BAD_QUERY, str(exc))
        except SpatialLlavaError as exc:  # a RemoteError carries its own code
            return out.fail(getattr(exc, 'code', MODEL_ERROR), str(exc))
    out.ranked = _ranked(resolution)
    out.confidence = float(resolution.confidence)
    if resolution.abstained or resolution.best_id is None:
        detail = resolution.reason or f'no mark chosen among {len(mark_ids)}'
        return out.fail(ABSTAIN, detail)
    try:
        mark = frame.mark(int(resolution.best_id))
    except ResolveError as exc:  # a resolver naming a mark this frame does not have
        return out.fail(MODEL_ERROR, str(exc))
    out.mark_id = int(mark.mark_id)
    out.box = tuple(int(v) for v in mark.box)
    if mark.centroid is None:
        return out.fail(NO_DEPTH, f'mark {mark.mark_id} has no valid depth in its mask '
                        f'(box {list(out.box)}); cannot place it in 3D')
    centroid = np.asarray(mark.centroid, dtype=np.float64)
    out.target_camera = centroid
    return _locate(out, frame, centroid, transforms, config)


def _locate(out: SpatialOutcome, frame: FrameRecord, centroid: np.ndarray,
            transforms: TransformLookup, config: PipelineConfig) -> SpatialOutcome:
    target_frame = out.target_frame
    try:
        world_from_camera = check_transform(transforms(target_frame, frame.frame_id,
                                                       frame.stamp_ns))
        if config.base_frame:
            world_from_base = check_transform(transforms(target_frame, config.base_frame,
                                                         frame.stamp_ns))
        else:
            world_from_base = world_from_camera
    except TransformUnavailableError as exc:
        return out.fail(NO_TRANSFORM, str(exc))
    except InputError as exc:
        return out.fail(NO_TRANSFORM, f'bad transform from tf: {exc}')
    target = transform_points(world_from_camera, centroid)
    out.target_world = target
    robot = world_from_base[:3, 3]
    try:
        if out.action == MANIPULATE:
            goal = manipulation_pose(target, robot, target_frame,
                                     fallback_yaw=robot_yaw(world_from_base))
        else:
            goal = navigation_goal(target, robot, config.standoff, target_frame,
                                   fallback_yaw=robot_yaw(world_from_base))
    except InputError as exc:
        return out.fail(GOAL_ERROR, str(exc))
    out.goal = goal
    out.success = True
    return out
