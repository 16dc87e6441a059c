"""The grounding syntax of region descriptions, and a tolerant parser for it.

Canonical form, what refinement writes and the prompts ask for::

    the red mug (mark 3) is left of the blue box (mark 5).

Also read, because models (and people) write them: ``(3)``, ``[3]``, ``<3>``, ``#3``,
``mark 3`` / ``Mark 3.`` / ``3: the chair`` (the Spatial-LLaVA answer styles), and the
paper's boxes ``[x0, y0, x1, y1]`` (fractions of the image in [0, 1], or pixels) with or without
``<ref>..</ref><box>..</box>`` tags. A grounding belongs to the object phrase right before
it in the same clause; a grounding with no phrase before it ("Mark 3. It is the chair")
takes the first phrase after it. An answer that is nothing but mark numbers ("3") grounds
those marks with no phrase (the resolver's own answer format). Object phrases are category
names (plural too, plus a few synonyms) with an optional colour word among the two words
before them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

SYNONYMS = {'couch': 'sofa', 'cup': 'mug', 'bin': 'trash_can', 'trash can': 'trash_can',
            'trashcan': 'trash_can', 'gray': 'grey', 'desk': 'table', 'cupboard': 'cabinet'}
RELATION_PHRASES = {
    'to the left of': 'left_of', 'left of': 'left_of', 'to the right of': 'right_of',
    'right of': 'right_of', 'in front of': 'in_front_of', 'behind': 'behind',
    'next to': 'next_to', 'beside': 'next_to',
}
_NUM = r'\d+(?:\.\d+)?'
_BOX = rf'\[\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*\]'
_GROUNDING = re.compile(
    rf'(?:<box>\s*)?{_BOX}(?:\s*</box>)?'  # 1-4: a box
    r'|\(\s*mark\s*#?\s*(\d+)\s*\)'  # 5: (mark 3)
    r'|[(\[<]\s*#?\s*(\d+)\s*[)\]>]'  # 6: (3) [3] <3>
    r'|\bmarks?\s*#?\s*(\d+)\b'  # 7: mark 3
    r'|#(\d+)\b'  # 8: #3
    r'|(?:^|(?<=[.;!?]\s))(\d+)\s*:(?!\d)',  # 9: "3: the chair ..." at a sentence start
    re.IGNORECASE | re.MULTILINE)
_SENTENCE_END = re.compile(r'[.!?;\n]')
# A whole answer that is only mark numbers ("3", "marks 3, 5 and 7."): the resolver's answer
# format, which a model fine-tuned on grounding alone gives to every question.
_BARE_MARKS = re.compile(r'^\s*(?:marks?\s*)?#?\d+(?:\s*(?:,|and|,\s*and)\s*#?\d+)*\s*[.!]?\s*$',
                         re.IGNORECASE)


@dataclass
class Grounding:
    """One grounding token: a mark number or a box (x0, y0, x1, y1 as written)."""

    start: int
    end: int
    mark: int | None = None
    box: tuple[float, float, float, float] | None = None


@dataclass
class Mention:
    """An object phrase: category (canonical), colour if said, and its grounding if any."""

    start: int
    end: int
    category: str
    color: str | None = None
    grounding: Grounding | None = None


@dataclass
class Relation:
    """``mentions[subject] <name> mentions[object]`` as stated in the text."""

    name: str
    subject: int
    object: int


@dataclass
class ParsedDescription:
    text: str
    mentions: list[Mention] = field(default_factory=list)
    groundings: list[Grounding] = field(default_factory=list)
    relations: list[Relation] = field(default_factory=list)

    @property
    def grounded(self) -> list[Mention]:
        return [m for m in self.mentions if m.grounding is not None]

    def orphan_groundings(self) -> list[Grounding]:
        """Groundings that no object phrase claims (unverifiable category)."""
        used = {id(m.grounding) for m in self.mentions if m.grounding is not None}
        return [g for g in self.groundings if id(g) not in used]


def _plural(word: str) -> str:
    if word.endswith(('s', 'x', 'sh', 'ch')):
        return word + 'es'
    return word + 's'


def _category_pattern(categories: list[str]) -> tuple[re.Pattern, dict[str, str]]:
    names: dict[str, str] = {}
    for cat in categories:
        spoken = cat.replace('_', ' ')
        for form in (spoken, _plural(spoken), cat):
            names[form] = cat
    for syn, cat in SYNONYMS.items():
        if cat in categories:
            names[syn] = cat
            names[_plural(syn)] = cat
    alts = sorted(names, key=len, reverse=True)
    pat = re.compile(r'\b(' + '|'.join(re.escape(a) for a in alts) + r')\b', re.IGNORECASE)
    return pat, names


def find_groundings(text: str) -> list[Grounding]:
    out = []
    for m in _GROUNDING.finditer(text):
        if m.group(1) is not None:
            box = tuple(float(m.group(i)) for i in range(1, 5))
            out.append(Grounding(m.start(), m.end(), box=box))
        else:
            num = next(g for g in m.groups()[4:] if g is not None)
            out.append(Grounding(m.start(), m.end(), mark=int(num)))
    return out


def _same_clause(text: str, a: int, b: int) -> bool:
    return _SENTENCE_END.search(text, a, b) is None


def parse_description(text: str, categories: list[str], colors: list[str],
                      max_gap: int = 40) -> ParsedDescription:
    """Object mentions, groundings and stated relations of a description."""
    out = ParsedDescription(text)
    if not text:
        return out
    low = text.lower()
    if _BARE_MARKS.match(text):
        out.groundings = [Grounding(m.start(), m.end(), mark=int(m.group()))
                          for m in re.finditer(r'\d+', text)]
        return out
    out.groundings = find_groundings(text)
    spans = [(g.start, g.end) for g in out.groundings]
    cat_pat, names = _category_pattern(list(categories))
    colour_set = {c.lower() for c in colors} | {k for k, v in SYNONYMS.items() if v in colors}
    for m in cat_pat.finditer(low):
        if any(s <= m.start() < e for s, e in spans):
            continue  # "mark" words inside a grounding token are not objects
        before = re.findall(r'[a-z]+', low[max(0, m.start() - 30):m.start()])[-2:]
        colour = next((SYNONYMS.get(w, w) for w in reversed(before) if w in colour_set), None)
        out.mentions.append(Mention(m.start(), m.end(), names[m.group(1)], colour))
    _attach(text, out, max_gap)
    out.relations = _relations(low, out.mentions)
    return out


def _attach(text: str, parsed: ParsedDescription, max_gap: int) -> None:
    mentions = parsed.mentions
    taken: set[int] = set()
    for g in parsed.groundings:
        # the phrase right before, same clause, nothing but words in between
        prev = [i for i, m in enumerate(mentions) if m.end <= g.start
                and g.start - m.end <= max_gap and _same_clause(text, m.end, g.start)]
        if prev:
            i = prev[-1]
            between = [x for x in parsed.groundings if mentions[i].end <= x.start < g.start]
            if i not in taken and not between:
                mentions[i].grounding = g
                taken.add(i)
                continue
        nxt = [i for i, m in enumerate(mentions) if m.start >= g.end
               and m.start - g.end <= max_gap and i not in taken]
        if nxt:
            i = nxt[0]
            between = [x for x in parsed.groundings if g.end <= x.start < mentions[i].start]
            if not between:
                mentions[i].grounding = g
                taken.add(i)


def _relations(low: str, mentions: list[Mention]) -> list[Relation]:
    rels = []
    alts = sorted(RELATION_PHRASES, key=len, reverse=True)
    pat = re.compile(r'\b(' + '|'.join(re.escape(a) for a in alts) + r')\b')
    for m in pat.finditer(low):
        subj = [i for i, x in enumerate(mentions)
                if x.end <= m.start() and _same_clause(low, x.end, m.start())]
        obj = [i for i, x in enumerate(mentions)
               if x.start >= m.end() and _same_clause(low, m.end(), x.start)]
        if subj and obj:
            rels.append(Relation(RELATION_PHRASES[m.group(1)], subj[-1], obj[0]))
    return rels


def format_mark(mark: int) -> str:
    """The canonical grounding of a mark."""
    return f'(mark {int(mark)})'


def regrounded(text: str, changes: list[tuple[Grounding, int | None]],
               additions: list[tuple[Mention, int]] = ()) -> str:
    """``text`` with some groundings replaced by another mark (None: removed) and canonical
    groundings added after some ungrounded mentions."""
    edits: list[tuple[int, int, str]] = []
    for g, mark in changes:
        edits.append((g.start, g.end, '' if mark is None else format_mark(mark)))
    for m, mark in additions:
        edits.append((m.end, m.end, ' ' + format_mark(mark)))
    out = text
    for start, end, new in sorted(edits, key=lambda e: (e[0], e[1]), reverse=True):
        out = out[:start] + new + out[end:]
    return re.sub(r' {2,}', ' ', re.sub(r'\s+([.,;!?])', r'\1', out)).strip()
