"""Marked synthetic frames: scene seed -> SoM image + mark ids + grounding queries.

Training and evaluation build frames the same way: the scene generator renders the frame,
the marks engine marks it (as at run time, not from ground-truth masks), and each GT object
is tied to the mark that overlaps it best. The settings that shape the image the model sees
travel with a trained model in ``som_settings.json`` so that evaluation and the demo draw
marks the way the model was trained on.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from spatial_llava_ros.errors import InputError
from spatial_llava_ros.evaluation.matching import match_marks

SETTINGS_FILE = 'som_settings.json'


@dataclass(frozen=True)
class SomSettings:
    """How frames are rendered and marked for a model (defaults: a 640x480 camera)."""

    scene_width: int = 640
    scene_height: int = 480
    text_height_336: float = 14.0
    mark_style: str = 'number'
    proposals: str = 'depth'
    label_placement: str = 'interior'
    # how many numberings of each frame the model is asked under (model/votes.py); 1 = the
    # engine's image only. Only models trained on renumbered frames gain from more. Not in
    # repr: the frames caches are keyed by the repr, and votes do not change a frame.
    renumber_votes: int = field(default=1, repr=False)

    def marker_kwargs(self) -> dict:
        """Keyword arguments for ``marks.mark_frame`` / ``MarkerConfig``."""
        return {'style': self.mark_style, 'text_height_336': self.text_height_336,
                'proposals': self.proposals, 'label_placement': self.label_placement}

    def save(self, model_dir: str | Path) -> Path:
        path = Path(model_dir) / SETTINGS_FILE
        path.write_text(json.dumps(asdict(self), indent=2) + '\n', encoding='utf-8')
        return path

    @classmethod
    def for_model(cls, model_dir: str | Path | None) -> SomSettings:
        """The settings a model was trained with; defaults when it has none."""
        if model_dir is None:
            return cls()
        path = Path(model_dir) / SETTINGS_FILE
        if not path.is_file():
            return cls()
        try:
            data = json.loads(path.read_text(encoding='utf-8'))
        except (OSError, ValueError) as exc:
            raise InputError(f'cannot read {path}: {exc}') from exc
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class MarkedScene:
    """One marked frame with its grounding queries (text, target mark, relation)."""

    seed: int
    image: np.ndarray
    mark_ids: list[int]
    queries: list[tuple[str, int, str]] = field(default_factory=list)
    unmatched: list[tuple[str, str]] = field(default_factory=list)  # (text, relation)
    marks_of: dict[int, int] = field(default_factory=dict)  # instance id -> mark id
    anchors: dict[int, tuple[int, int]] = field(default_factory=dict)  # mark id -> (u, v)
    leaders: list = field(default_factory=list)  # label-to-object lines (placement auto)
    scene: object | None = None
    marked: object | None = None
    # Extras for a multi-task run (training_frame): the unmarked frame, per-patch targets,
    # free-form turns (question, answer) and true/false captions (caption, label).
    rgb: np.ndarray | None = None
    dense: object | None = None
    free: list[tuple[str, str]] = field(default_factory=list)
    vsr: list[tuple[str, bool]] = field(default_factory=list)


def marked_scene(seed: int, settings: SomSettings, max_expressions: int = 16,
                 keep: bool = False, min_iou: float = 0.3) -> MarkedScene:
    """Generate scene ``seed``, mark it with the marks engine and tie queries to marks.

    Queries whose target got no mark (below ``min_iou``) go to ``unmatched``: an evaluation
    counts them as failures, training skips them.
    """
    from spatial_llava_ros.marks.engine import mark_frame
    from spatial_llava_ros.scene.generate import generate_scene

    scene = generate_scene(int(seed), settings.scene_width, settings.scene_height,
                           max_expressions=max_expressions)
    marked = mark_frame(scene.frame.rgb, scene.frame.depth, scene.frame.intrinsics,
                        **settings.marker_kwargs())
    matched = match_marks({m.mark_id: m.mask for m in marked.marks},
                          scene.frame.instance_mask, min_iou=min_iou)
    marks_of = {inst: mark for inst, (mark, _) in matched.items()}
    out = MarkedScene(int(seed), marked.image, [m.mark_id for m in marked.marks],
                      marks_of=marks_of,
                      anchors={m.mark_id: (int(m.anchor[0]), int(m.anchor[1]))
                               for m in marked.marks},
                      leaders=[m.leader for m in marked.marks if m.leader is not None])
    for expr in scene.expressions:
        if expr.target_id in marks_of:
            out.queries.append((expr.text, marks_of[expr.target_id], expr.relation))
        else:
            out.unmatched.append((expr.text, expr.relation))
    if keep:
        out.scene, out.marked = scene, marked
    return out


def training_frame(seed: int, settings: SomSettings, max_expressions: int, grid: int,
                   dense: bool, free: bool, label_features: bool = False) -> MarkedScene:
    """``marked_scene`` plus what a multi-task run trains on, without the bulky scene.

    ``grid`` is the model's patch grid side (dense targets are per patch); ``free`` adds the
    SUN-Spot-style free-form turns (reasons, attributes, yes/no about marks) and the
    unmarked frame's true/false captions in the VSR wording; ``label_features``: a label's
    patches carry its object's dense targets too (``dense_targets``' ``label_objects``).
    """
    from spatial_llava_ros.marks.placement import label_rect, label_style
    from spatial_llava_ros.training.conversations import load_templates, scene_turns

    f = marked_scene(seed, settings, max_expressions=max_expressions, keep=True)
    scene, marked = f.scene, f.marked
    f.rgb = scene.frame.rgb
    if dense:
        from spatial_llava_ros.training.dense import dense_targets

        h, w = marked.image.shape[:2]
        style = label_style(h, w, settings.text_height_336)
        rects = {m.mark_id: label_rect(m.anchor, str(m.mark_id), style, (h, w))
                 for m in marked.marks}
        objects = ({m: i for i, m in f.marks_of.items()} if label_features else None)
        f.dense = dense_targets(scene, marked, grid, rects, objects)
    if free:
        turns = scene_turns(scene, f.marks_of, load_templates(), seed=seed, max_turns=64)
        f.free = [(t.question, t.answer) for t in turns if t.kind != 'grounding']
        for cap in scene.vsr_captions:
            text = cap.caption[0].upper() + cap.caption[1:]
            f.vsr.append((f'{text}.', bool(cap.label)))
    f.scene = f.marked = None
    return f


def settings_from_data(data_cfg) -> SomSettings:
    """SomSettings from a training DataConfig."""
    return SomSettings(int(data_cfg.scene_width), int(data_cfg.scene_height),
                       float(data_cfg.text_height_336), str(data_cfg.mark_style),
                       str(data_cfg.proposals), str(data_cfg.label_placement),
                       int(getattr(data_cfg, 'renumber_votes', 1)))


def keep_relations(frames: list[MarkedScene], relations: list[str]) -> None:
    """Drop every query whose relation is not in ``relations``, in place (a curriculum's
    first phase trains on the plainest lookups only; the frames' images stay as they are)."""
    keep = set(relations)
    for f in frames:
        f.queries = [q for q in f.queries if q[2] in keep]


def weighted_queries(queries: list, k: int, weights: dict[str, float], rng) -> list:
    """``k`` of ``queries`` (text, mark, relation) drawn without replacement, each with
    odds ``weights[relation]`` (default 1): Efraimidis-Spirakis keys u ** (1 / w)."""
    keys = [rng.random() ** (1.0 / float(weights.get(q[2], 1.0))) for q in queries]
    order = sorted(range(len(queries)), key=keys.__getitem__, reverse=True)[:k]
    return [queries[i] for i in sorted(order)]
