"""Free-form region descriptions: does the generated answer name the right marks?

SPR rewards descriptions that ground the right objects, so a model must first be able to
say, in its own words, which mark a referring expression means and which mark is its
landmark. This asks the ``grounding_reason`` questions of the conversation templates on
held-out synthetic scenes, generates greedily (the plain LLaVA ``generate`` path), and
checks the first number in the answer against the target's mark and the later numbers
against the landmarks' marks.
"""

from __future__ import annotations

import re
import time

from spatial_llava_ros.errors import InputError
from spatial_llava_ros.training.synthetic import SomSettings, marked_scene

_NUMBER = re.compile(r'\d+')


def named_marks(answer: str) -> list[int]:
    """Every number in ``answer``, in order ("8: the mug ..., and the lamp is mark 2." ->
    [8, 2])."""
    return [int(n) for n in _NUMBER.findall(answer)]


def evaluate_descriptions(resolver, seeds: list[int], settings: SomSettings,
                          per_scene: int = 4, max_new_tokens: int = 40,
                          progress: bool = False) -> dict:
    """Target and anchor naming rates of free-form answers; JSON-ready."""
    from spatial_llava_ros.training.conversations import load_templates

    if not seeds:
        raise InputError('no seeds to evaluate')
    questions = load_templates()['grounding_reason']
    it = seeds
    if progress:
        from tqdm import tqdm

        it = tqdm(seeds, desc='eval describe', unit='scene')
    t0 = time.time()
    n = target_ok = with_anchor = anchor_ok = both_ok = 0
    examples = []
    for seed in it:
        ms = marked_scene(seed, settings, keep=True)
        asked = 0
        for expr in ms.scene.expressions:
            if asked >= per_scene:
                break
            if expr.target_id not in ms.marks_of:
                continue
            question = questions[(n + seed) % len(questions)].format(text=expr.text)
            answer = resolver.answer(ms.image, question, max_new_tokens=max_new_tokens)
            named = named_marks(answer)
            target = ms.marks_of[expr.target_id]
            hit = bool(named) and named[0] == target
            anchors = {ms.marks_of[i] for i in expr.landmark_ids if i in ms.marks_of}
            n += 1
            asked += 1
            target_ok += hit
            anchor_hit = None
            if anchors:
                with_anchor += 1
                anchor_hit = anchors <= set(named[1:])
                anchor_ok += anchor_hit
                both_ok += anchor_hit and hit
            if len(examples) < 12:
                examples.append({'seed': seed, 'question': question, 'answer': answer,
                                 'target_mark': target, 'anchor_marks': sorted(anchors),
                                 'target_named': hit, 'anchors_named': anchor_hit})
    if n == 0:
        raise InputError(f'{len(seeds)} scenes gave 0 questions')
    return {
        'target_named': target_ok / n,
        'anchor_named': anchor_ok / max(1, with_anchor),  # of the questions with a landmark
        'target_and_anchor_named': both_ok / max(1, with_anchor),
        'n_questions': n, 'n_with_anchor': with_anchor,
        'seeds': f'{min(seeds)}:{max(seeds) + 1}', 'settings': settings.__dict__,
        'wall_s': round(time.time() - t0, 1), 'examples': examples,
    }
