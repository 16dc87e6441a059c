"""Semantic and localization scores of a grounded region description (SPR step 3).

The paper scores a description on two axes and ranks by both: does the text match the
region's content and its surroundings (semantic score), and are the objects it grounds
where it says (localization score: IoU with the annotations, and how many of the region's
objects it covers). The paper's semantic judge is an external LLM; here nothing leaves the
machine, so the semantic score is computed from the annotations, deterministically:

- precision: each object phrase earns 1 when such an object (category, and colour when one
  is said) is in the region, ``surround_credit`` when it is only elsewhere in the frame
  (surroundings), 0 when the frame has none (hallucination); a wrong colour halves it;
- coverage: share of the region's objects that some phrase names;
- detail: share of those that are named with their (right) colour;
- relations: share of stated relations ("X left of Y") that hold in 3D (the scene
  generator's own three-valued predicates; ambiguous ones are not counted).

``semantic = mean(precision, coverage, detail[, relations])`` in [0, 1].

Localization: groundings (marks, or boxes) and the region's objects are matched one to one
(Hungarian, on IoU; a grounding whose phrase names another category gets IoU 0), matches
below ``min_iou`` dropped, then ``localization = sum(IoU of matches) / (groundings +
region objects - matches)``: 1 only when every region object is grounded, exactly, and
nothing else is. ``total = semantic_weight * semantic + localization_weight * localization``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from spatial_llava_ros.errors import InputError
from spatial_llava_ros.spr.annotations import AnnotatedObject, SceneAnnotation
from spatial_llava_ros.spr.grounding import (
    Grounding,
    Mention,
    ParsedDescription,
    parse_description,
)
from spatial_llava_ros.spr.regions import QueryRegion


@dataclass(frozen=True)
class ScoreWeights:
    semantic_weight: float = 1.0
    localization_weight: float = 1.0
    surround_credit: float = 0.5
    min_iou: float = 0.3

    def __post_init__(self) -> None:
        if self.semantic_weight < 0 or self.localization_weight < 0:
            raise InputError(f'score weights must be >= 0, got {self.semantic_weight}, '
                             f'{self.localization_weight}')
        if not 0.0 <= self.surround_credit <= 1.0 or not 0.0 <= self.min_iou <= 1.0:
            raise InputError(f'surround_credit {self.surround_credit} and min_iou '
                             f'{self.min_iou} must be in [0, 1]')


@dataclass
class DescriptionScore:
    semantic: float
    localization: float
    total: float
    precision: float
    coverage: float
    detail: float | None
    relations: float | None
    n_mentions: int
    n_groundings: int
    n_matched: int
    mean_iou: float

    def to_dict(self) -> dict:
        return {k: (round(v, 5) if isinstance(v, float) else v)
                for k, v in asdict(self).items()}


def vocabulary(annotation: SceneAnnotation) -> tuple[list[str], list[str]]:
    """Categories and colours the parser knows: the catalog's plus the annotation's own."""
    from spatial_llava_ros.scene.catalog import CATEGORIES, COLORS

    cats = sorted(set(CATEGORIES) | {o.category for o in annotation.objects})
    cols = sorted(set(COLORS) | {o.color for o in annotation.objects})
    return cats, cols


def parse_for(text: str, annotation: SceneAnnotation) -> ParsedDescription:
    cats, cols = vocabulary(annotation)
    return parse_description(text, cats, cols)


def box_iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def grounding_iou(g: Grounding, obj: AnnotatedObject, annotation: SceneAnnotation) -> float:
    """How well a grounding covers an annotated object: mark mask IoU, or box IoU."""
    if g.mark is not None:
        return float(annotation.mark_iou.get(g.mark, {}).get(obj.instance_id, 0.0))
    box = g.box
    if max(box) <= 1.0:  # fractions of the image, as LLaVA-1.5 / Shikra write boxes
        box = (box[0] * annotation.width, box[1] * annotation.height,
               box[2] * annotation.width, box[3] * annotation.height)
    return box_iou(box, obj.box)


def _iou_matrix(parsed: ParsedDescription, region_objs: list[AnnotatedObject],
                annotation: SceneAnnotation) -> np.ndarray:
    phrase = {id(m.grounding): m for m in parsed.mentions if m.grounding is not None}
    mat = np.zeros((len(parsed.groundings), len(region_objs)))
    for i, g in enumerate(parsed.groundings):
        m = phrase.get(id(g))
        for j, obj in enumerate(region_objs):
            if m is not None and m.category != obj.category:
                continue
            mat[i, j] = grounding_iou(g, obj, annotation)
    return mat


def match_groundings(parsed: ParsedDescription, region_objs: list[AnnotatedObject],
                     annotation: SceneAnnotation, min_iou: float) -> list[tuple[int, int, float]]:
    """One-to-one (grounding index, region object index, IoU) matches with IoU >= min_iou."""
    if not parsed.groundings or not region_objs:
        return []
    from scipy.optimize import linear_sum_assignment

    mat = _iou_matrix(parsed, region_objs, annotation)
    rows, cols = linear_sum_assignment(-mat)
    return [(int(r), int(c), float(mat[r, c])) for r, c in zip(rows, cols)
            if mat[r, c] >= max(min_iou, 1e-9)]


def localization_score(parsed: ParsedDescription, region_objs: list[AnnotatedObject],
                       annotation: SceneAnnotation, min_iou: float = 0.3
                       ) -> tuple[float, int, float]:
    """(score, matches, mean IoU of matches); see the module docstring."""
    matches = match_groundings(parsed, region_objs, annotation, min_iou)
    denom = len(parsed.groundings) + len(region_objs) - len(matches)
    total = sum(iou for _, _, iou in matches)
    mean = total / len(matches) if matches else 0.0
    return (total / denom if denom > 0 else 0.0), len(matches), mean


def resolve_mention(m: Mention, region_objs: list[AnnotatedObject],
                    annotation: SceneAnnotation) -> AnnotatedObject | None:
    """The object a phrase means: its grounding's object if the category agrees, else the
    only object of that category (and colour) in the region, else in the frame."""
    g = m.grounding
    if g is not None:
        scored = [(grounding_iou(g, o, annotation), o) for o in annotation.objects
                  if o.category == m.category]
        scored = [s for s in scored if s[0] > 0]
        if scored:
            return max(scored, key=lambda s: s[0])[1]
    for pool in (region_objs, annotation.objects):
        same = [o for o in pool if o.category == m.category
                and (m.color is None or o.color == m.color)]
        if len(same) == 1:
            return same[0]
    return None


def _relation_truth(rel_name: str, a: AnnotatedObject, b: AnnotatedObject,
                    annotation: SceneAnnotation) -> bool | None:
    if annotation.camera_pose is None or None in (a.center, b.center, a.size, b.size):
        return None
    from spatial_llava_ros.scene.expressions import object_views, pair_relation
    from spatial_llava_ros.scene.types import SceneObject

    objs = [SceneObject(o.instance_id, o.category, o.color, (0, 0, 0), np.asarray(o.center),
                        np.asarray(o.size), o.yaw) for o in (a, b)]
    va, vb = object_views(objs, annotation.camera_pose)
    return pair_relation(rel_name, va, vb)


def semantic_parts(parsed: ParsedDescription, region_objs: list[AnnotatedObject],
                   annotation: SceneAnnotation, surround_credit: float = 0.5
                   ) -> tuple[float, float, float | None, float | None]:
    """(precision, coverage, detail, relations); detail is None when no region object has
    a colour, relations None when none was stated and checkable; see the module docstring."""
    if not parsed.mentions:
        return 0.0, 0.0, 0.0, None
    credits = []
    for m in parsed.mentions:
        for pool, credit in ((region_objs, 1.0), (annotation.objects, surround_credit)):
            same = [o for o in pool if o.category == m.category]
            if same:
                ok_colour = m.color is None or any(o.color in (m.color, '') for o in same)
                credits.append(credit if ok_colour else credit * 0.5)
                break
        else:
            credits.append(0.0)
    precision = float(np.mean(credits))

    covered: dict[int, Mention] = {}
    resolved = [resolve_mention(m, region_objs, annotation) for m in parsed.mentions]
    region_ids = {o.instance_id for o in region_objs}
    for m, obj in zip(parsed.mentions, resolved):
        if obj is not None and obj.instance_id in region_ids and obj.instance_id not in covered:
            covered[obj.instance_id] = m
    for m, obj in zip(parsed.mentions, resolved):
        if obj is not None and obj.instance_id in region_ids:
            continue
        free = [o for o in region_objs if o.instance_id not in covered
                and o.category == m.category and (m.color is None or o.color == m.color)]
        if free:
            covered[free[0].instance_id] = m
    coverage = len(covered) / len(region_objs) if region_objs else 0.0
    coloured = [o for o in region_objs if o.color]  # real annotations may have no colours
    detail = (sum(covered[o.instance_id].color == o.color for o in coloured
                  if o.instance_id in covered) / len(coloured)) if coloured else None

    truths = []
    for rel in parsed.relations:
        a, b = resolved[rel.subject], resolved[rel.object]
        if a is None or b is None or a.instance_id == b.instance_id:
            continue
        t = _relation_truth(rel.name, a, b, annotation)
        if t is not None:
            truths.append(1.0 if t else 0.0)
    relations = float(np.mean(truths)) if truths else None
    return precision, coverage, detail, relations


def region_objects(region: QueryRegion, annotation: SceneAnnotation) -> list[AnnotatedObject]:
    if region.scene_id != annotation.scene_id:
        raise InputError(f'region of scene {region.scene_id} scored against scene '
                         f'{annotation.scene_id}')
    return [annotation.object(i) for i in region.instance_ids]


def score_description(text: str, region: QueryRegion, annotation: SceneAnnotation,
                      weights: ScoreWeights | None = None) -> DescriptionScore:
    """Semantic, localization and combined score of one description of ``region``."""
    w = weights or ScoreWeights()
    if not isinstance(text, str):
        raise InputError(f'description must be a string, got {type(text).__name__}')
    objs = region_objects(region, annotation)
    parsed = parse_for(text, annotation)
    precision, coverage, detail, rel = semantic_parts(parsed, objs, annotation,
                                                      w.surround_credit)
    parts = [p for p in (precision, coverage, detail, rel) if p is not None]
    semantic = float(np.mean(parts))
    loc, n_match, mean_iou = localization_score(parsed, objs, annotation, w.min_iou)
    total = w.semantic_weight * semantic + w.localization_weight * loc
    return DescriptionScore(semantic, loc, total, precision, coverage, detail, rel,
                            len(parsed.mentions), len(parsed.groundings), n_match, mean_iou)
