"""SUN-Spot-style conversations: a scene's annotations + its marks -> LLaVA-1.5 turns.

SUN-Spot v2.0 ties every landmark named in a caption to a Set-of-Marks number; the
conversations ask for the mark of a referred landmark, answer with the number and a short
reason, ask for look-alikes by a unique attribute, and include negatives. The wording lives
in config/conversation_templates.yaml; this module only fills it in.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from spatial_llava_ros.errors import InputError
from spatial_llava_ros.scene.types import Scene

_REQUIRED = ('grounding_short', 'answer_short', 'grounding_reason', 'answer_reason',
             'landmark_clause', 'attribute_question', 'answer_attribute', 'yes_no_question',
             'answer_yes', 'answer_no', 'relation_phrases')


@dataclass(frozen=True)
class Turn:
    """One question/answer pair; ``kind`` says which template family made it."""

    question: str
    answer: str
    kind: str  # grounding | grounding_reason | attribute | yes_no
    relation: str = ''
    target_mark: int | None = None


def load_templates(path: str | Path | None = None) -> dict:
    """The conversation templates (default: config/conversation_templates.yaml)."""
    from spatial_llava_ros.paths import read_yaml_mapping

    data = read_yaml_mapping(path, 'conversation_templates.yaml', 'conversation templates')
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise InputError(f'conversation templates {path}: missing keys {missing}')
    return data


def _pick(rng: random.Random, value: str | list[str]) -> str:
    return rng.choice(value) if isinstance(value, list) else value


def _name(category: str) -> str:
    return category.replace('_', ' ')


def relation_phrase(templates: dict, relation: str) -> str:
    return templates['relation_phrases'].get(relation, relation.replace('_', ' '))


def scene_turns(scene: Scene, marks_of: dict[int, int], templates: dict, seed: int = 0,
                max_turns: int = 12) -> list[Turn]:
    """Conversation turns for one scene.

    ``marks_of`` maps instance ids to the mark drawn on them; anything about an object
    without a mark is skipped (it cannot be answered with a number).
    """
    rng = random.Random(seed)
    turns: list[Turn] = []
    objects = {o.instance_id: o for o in scene.objects}
    for i, expr in enumerate(scene.expressions):
        if expr.target_id not in marks_of:
            continue
        mark = marks_of[expr.target_id]
        text = expr.text
        if i % 2 == 0:
            turns.append(Turn(_pick(rng, templates['grounding_short']).format(text=text),
                              templates['answer_short'].format(mark=mark), 'grounding',
                              expr.relation, mark))
            continue
        landmarks = ''
        lms = [lid for lid in expr.landmark_ids if lid in marks_of and lid in objects]
        if lms:
            names = ' and '.join(f'the {_name(objects[lid].category)}' for lid in lms)
            landmarks = templates['landmark_clause'].format(
                names=names, verb='are' if len(lms) > 1 else 'is',
                marks=' and '.join(str(marks_of[lid]) for lid in lms))
        turns.append(Turn(_pick(rng, templates['grounding_reason']).format(text=text),
                          _pick(rng, templates['answer_reason']).format(
                              mark=mark, text=text, landmarks=landmarks),
                          'grounding_reason', expr.relation, mark))
    # Unique attribute among look-alikes: same category, only one of this colour.
    by_cat: dict[str, list] = {}
    for obj in scene.objects:
        if obj.instance_id in marks_of:
            by_cat.setdefault(obj.category, []).append(obj)
    for cat, objs in sorted(by_cat.items()):
        if len(objs) < 2:
            continue
        colours = [o.color_name for o in objs]
        for obj in objs:
            if colours.count(obj.color_name) != 1:
                continue
            others = ', '.join(sorted({c for c in colours if c != obj.color_name}))
            mark = marks_of[obj.instance_id]
            fill = {'color': obj.color_name, 'category': _name(cat), 'mark': mark,
                    'others': others}
            turns.append(Turn(_pick(rng, templates['attribute_question']).format(**fill),
                              _pick(rng, templates['answer_attribute']).format(**fill),
                              'attribute', 'attribute', mark))
    # True/false questions; the false captions are the negatives.
    for cap in scene.vsr_captions:
        if cap.subject_id not in marks_of or cap.object_id not in marks_of:
            continue
        fill = {'a': marks_of[cap.subject_id], 'b': marks_of[cap.object_id],
                'relation': relation_phrase(templates, cap.relation)}
        answer = templates['answer_yes' if cap.label else 'answer_no'].format(**fill)
        turns.append(Turn(_pick(rng, templates['yes_no_question']).format(**fill), answer,
                          'yes_no', cap.relation))
    if len(turns) > max_turns:
        # Keep every kind represented, then fill up at random.
        kinds: dict[str, list[Turn]] = {}
        for t in turns:
            kinds.setdefault(t.kind, []).append(t)
        kept = [rng.choice(group) for group in kinds.values()]
        rest = [t for t in turns if t not in kept]
        rng.shuffle(rest)
        kept += rest[:max_turns - len(kept)]
        turns = [t for t in turns if t in kept]
    return turns


def llava_record(record_id: str, image: str, turns: list[Turn], mark_ids: list[int],
                 extra: dict | None = None) -> dict:
    """One entry of a LLaVA-1.5 training JSON (``conversations`` of human/gpt turns).

    The first human turn starts with ``<image>\\n`` as in LLaVA's own data; ``marks`` and
    ``kinds`` are extra keys LLaVA's loader ignores and this package's trainer uses.
    """
    if not turns:
        raise InputError(f'record {record_id}: no turns (no expression had a mark)')
    conv = []
    for i, turn in enumerate(turns):
        question = ('<image>\n' + turn.question) if i == 0 else turn.question
        conv.append({'from': 'human', 'value': question})
        conv.append({'from': 'gpt', 'value': turn.answer})
    record = {'id': record_id, 'image': image, 'conversations': conv,
              'marks': [int(m) for m in mark_ids], 'kinds': [t.kind for t in turns],
              'relations': [t.relation for t in turns]}
    if extra:
        record.update(extra)
    return record
