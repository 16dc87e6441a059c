"""Grounding refinement and preference pairs (SPR step 4).

The paper improves the model's own descriptions by correcting their localization with the
matched annotated objects, re-scores the refinements, and pairs the best-scored refinement
(chosen) with the lowest-scored initial description (rejected). With marks the correction
is a mark number: a phrase grounded on the wrong mark gets the mark of the annotated object
it names (same category and colour, preferring the query region, then the object its wrong
mark overlaps most, then the nearest); a grounding that names nothing annotated is removed.
A second refinement also grounds the phrases the model left ungrounded, when the object is
clear. The wording is never changed, so a pair differs in localization only, as in SPR.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from spatial_llava_ros.spr.annotations import AnnotatedObject, SceneAnnotation
from spatial_llava_ros.spr.grounding import Grounding, Mention, regrounded
from spatial_llava_ros.spr.regions import QueryRegion
from spatial_llava_ros.spr.scoring import grounding_iou, parse_for, region_objects


def _centre(box) -> tuple[float, float]:
    return (box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0


def _grounding_box(g: Grounding, annotation: SceneAnnotation):
    if g.mark is not None:
        return annotation.mark_boxes.get(g.mark)
    b = g.box
    if max(b) <= 1.0:
        return (b[0] * annotation.width, b[1] * annotation.height,
                b[2] * annotation.width, b[3] * annotation.height)
    return b


def _pick(m: Mention, region_objs: list[AnnotatedObject], annotation: SceneAnnotation,
          taken: set[int]) -> AnnotatedObject | None:
    """The annotated object a phrase should be grounded on (None: nothing fits)."""
    for pool in (region_objs, annotation.objects):
        cands = [o for o in pool if o.category == m.category and o.mark_id is not None
                 and (m.color is None or o.color == m.color) and o.instance_id not in taken]
        if not cands:
            continue
        if m.grounding is None:
            return cands[0] if len(cands) == 1 else None
        box = _grounding_box(m.grounding, annotation)
        here = _centre(box) if box else None
        return min(cands, key=lambda o: (-grounding_iou(m.grounding, o, annotation),
                                         math.dist(here, _centre(o.box)) if here else 0.0,
                                         o.instance_id))
    return None


@dataclass
class Refinement:
    kind: str  # 'regrounded' or 'grounded'
    text: str


def refine_description(text: str, region: QueryRegion,
                       annotation: SceneAnnotation) -> list[Refinement]:
    """Refinements of one description (deduplicated; may equal the input)."""
    objs = region_objects(region, annotation)
    parsed = parse_for(text, annotation)
    changes: list[tuple[Grounding, int | None]] = []
    taken: set[int] = set()
    # keep groundings that are already right (category agrees, mark/box overlaps it)
    right: dict[int, AnnotatedObject] = {}
    for i, m in enumerate(parsed.mentions):
        if m.grounding is None:
            continue
        best = max(((grounding_iou(m.grounding, o, annotation), o) for o in annotation.objects
                    if o.category == m.category and (m.color is None or o.color == m.color)),
                   key=lambda s: s[0], default=(0.0, None))
        if best[1] is not None and best[0] >= 0.3 and best[1].instance_id not in taken:
            right[i] = best[1]
            taken.add(best[1].instance_id)
            if m.grounding.box is not None and best[1].mark_id is not None:
                changes.append((m.grounding, best[1].mark_id))  # a box becomes its mark
    for i, m in enumerate(parsed.mentions):
        if m.grounding is None or i in right:
            continue
        obj = _pick(m, objs, annotation, taken)
        if obj is None:
            changes.append((m.grounding, None))
        else:
            taken.add(obj.instance_id)
            changes.append((m.grounding, obj.mark_id))
    region_marks = {o.mark_id for o in objs}
    for g in parsed.orphan_groundings():
        if g.mark is None or g.mark not in region_marks:
            changes.append((g, None))
    additions: list[tuple[Mention, int]] = []
    for m in parsed.mentions:
        if m.grounding is not None:
            continue
        obj = _pick(m, objs, annotation, taken)
        if obj is not None:
            taken.add(obj.instance_id)
            additions.append((m, obj.mark_id))
    out: list[Refinement] = []
    for kind, text_out in (('regrounded', regrounded(text, changes)),
                           ('grounded', regrounded(text, changes, additions))):
        if text_out and all(r.text != text_out for r in out):
            out.append(Refinement(kind, text_out))
    return out


def best_pair(initial: list[dict], refined: list[dict], min_margin: float = 0.0
              ) -> tuple[dict, dict] | None:
    """(chosen, rejected): best-scored refinement vs lowest-scored initial description.

    Items are dicts with 'text' and 'score' {'total': ...}. None when there is no pair
    worth training on: nothing to compare, same text, or a margin below ``min_margin``.
    """
    if not initial or not refined:
        return None
    chosen = max(refined, key=lambda r: r['score']['total'])
    rejected = min(initial, key=lambda r: r['score']['total'])
    if chosen['text'].strip() == rejected['text'].strip():
        return None
    if chosen['score']['total'] - rejected['score']['total'] < min_margin or \
            chosen['score']['total'] <= rejected['score']['total']:
        return None
    return chosen, rejected
