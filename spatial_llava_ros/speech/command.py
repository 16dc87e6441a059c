"""Recognised words -> the command the robot acts on, and the metrics used to judge them.

"go to the chair left of the table" -> action 'go_to', expression 'the chair left of the
table'; "mark three" -> action 'mark', mark 3, text 'mark 3'. Typed queries go through the
same :func:`parse_command`, so speech and text meet in one format.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from spatial_llava_ros.speech.grammar import ACTIONS, words_to_number

_PHRASE_TO_ACTION = sorted(((p, key) for key, ps in ACTIONS.items() for p in ps),
                           key=lambda pk: -len(pk[0]))


@dataclass
class Command:
    """A parsed command: what to do, and to what (a referring expression or a mark)."""

    text: str  # normalised full command, e.g. 'go to the chair left of the table', 'mark 3'
    action: str  # go_to | pick_up | find | where_is | mark | '' (expression only)
    expression: str  # 'the chair left of the table'; '' for a bare mark
    mark_id: int | None = None


def normalise(text: str) -> str:
    """Lower case, no punctuation, single spaces (Whisper adds capitals and full stops)."""
    text = re.sub(r"[^a-z0-9' ]+", ' ', text.lower())
    return ' '.join(text.split())


def parse_command(text: str) -> Command:
    """Split a recognised command into action and expression; spoken mark numbers -> digits."""
    norm = normalise(text)
    words = norm.split()
    action, n_verb = '', 0
    for phrase, key in _PHRASE_TO_ACTION:
        if norm == phrase or norm.startswith(phrase + ' '):
            action, n_verb = key, len(phrase.split())
            break
    verb, rest = words[:n_verb], words[n_verb:]
    if rest and rest[0] == 'mark':
        number = rest[2:] if len(rest) > 1 and rest[1] == 'number' else rest[1:]
        mark_id = words_to_number(number)
        if mark_id is not None:
            return Command(' '.join(verb + ['mark', str(mark_id)]), action or 'mark', '',
                           mark_id)
    return Command(norm, action, ' '.join(rest))


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(edit distance in words, reference length): the parts of a corpus WER."""
    ref, hyp = normalise(reference).split(), normalise(hypothesis).split()
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1], len(ref)


def wer(references: list[str], hypotheses: list[str]) -> float:
    """Corpus word error rate: total edits / total reference words."""
    if len(references) != len(hypotheses):
        raise ValueError(f'{len(references)} references vs {len(hypotheses)} hypotheses')
    edits = words = 0
    for ref, hyp in zip(references, hypotheses):
        e, n = word_errors(ref, hyp)
        edits, words = edits + e, words + n
    return edits / max(words, 1)
