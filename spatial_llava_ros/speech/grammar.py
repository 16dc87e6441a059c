"""Scene-aware decoding: a JSGF command grammar built from what the robot can see.

A general language model turns synthetic "go to the chair left of the table" into
"it's on the title"; a grammar that only allows the command patterns over the words of
the current scene (categories in view, their colours, spatial words, mark numbers) gets it
right. :class:`SceneVocabulary` holds those words; :func:`build_jsgf` turns them into a
grammar that is rebuilt whenever the scene changes (cheap: a few ms).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

# What the robot is told to do; the key goes into SpatialQuery.action.
# Few synonyms on purpose: each alternative is one more way to mishear ("go to" was
# heard as "look at" and "move to" when those were allowed).
ACTIONS: dict[str, tuple[str, ...]] = {
    'go_to': ('go to', 'navigate to'),
    'pick_up': ('pick up',),
    'find': ('find',),
    'where_is': ('where is',),
}
# Fallback lists for when the scene generator cannot be imported; default_vocabulary()
# prefers spatial_llava_ros.scene.CATEGORIES / COLORS so the two never drift apart.
DEFAULT_CATEGORIES = ('chair', 'table', 'mug', 'box', 'bottle', 'lamp', 'plant', 'book',
                      'bowl', 'laptop', 'sofa', 'cabinet', 'trash can', 'vase')
DEFAULT_COLOURS = ('red', 'green', 'blue', 'yellow', 'orange', 'purple', 'white', 'black',
                   'brown', 'grey', 'pink', 'teal')
ORDINALS = ('first', 'second', 'third', 'fourth', 'fifth', 'sixth', 'seventh', 'eighth',
            'ninth', 'tenth')
SUPERLATIVES = ('nearest', 'closest', 'farthest', 'largest', 'smallest', 'leftmost',
                'rightmost')
# Words the scene generator says that CMUdict lacks (ARPAbet, as in cmudict-en-us.dict).
EXTRA_PRONUNCIATIONS = {'leftmost': 'L EH F T M OW S T', 'rightmost': 'R AY T M OW S T'}
# binary relations "<np> <relation> <np>": the generator's left_of, right_of, in_front_of,
# behind, next_to (between, ordinals and superlatives have their own patterns)
RELATIONS = ('left of', 'right of', 'to the left of', 'to the right of', 'in front of',
             'behind', 'next to', 'near')
NUMBER_WORDS = ('zero', 'one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine',
                'ten', 'eleven', 'twelve', 'thirteen', 'fourteen', 'fifteen', 'sixteen',
                'seventeen', 'eighteen', 'nineteen', 'twenty', 'thirty', 'forty', 'fifty',
                'sixty', 'seventy', 'eighty', 'ninety')
MAX_MARK = 99
_WORD = re.compile(r"^[a-z][a-z']*$")


def number_to_words(n: int) -> str:
    """0..99 -> 'twenty three' (how mark numbers are spoken)."""
    if not 0 <= n <= MAX_MARK:
        raise ValueError(f'mark numbers are 0..{MAX_MARK}; got {n}')
    if n < 20:
        return NUMBER_WORDS[n]
    tens, ones = divmod(n, 10)
    word = NUMBER_WORDS[18 + tens]
    return word if ones == 0 else f'{word} {NUMBER_WORDS[ones]}'


def words_to_number(words: Iterable[str]) -> int | None:
    """'twenty three' -> 23, '7' -> 7; None when the words are not a number."""
    words = list(words)
    if len(words) == 1 and words[0].isdigit():
        return int(words[0])
    lookup = {number_to_words(n): n for n in range(MAX_MARK + 1)}
    return lookup.get(' '.join(words))


@dataclass
class SceneVocabulary:
    """The words a command may use right now: rebuilt from each new scene or mark set."""

    categories: list[str] = field(default_factory=lambda: list(DEFAULT_CATEGORIES))
    colours: list[str] = field(default_factory=lambda: list(DEFAULT_COLOURS))
    mark_ids: list[int] = field(default_factory=list)
    relations: list[str] = field(default_factory=lambda: list(RELATIONS))
    ordinals: list[str] = field(default_factory=lambda: list(ORDINALS[:5]))
    # (colour, category) pairs in view: when known, "the <colour> <noun>" is only allowed
    # for pairs that exist ("the white mug" cannot be said when the only mug is black);
    # empty = any colour with any category (no scene known)
    pairs: list[tuple[str, str]] = field(default_factory=list)
    # phrases that pick out exactly one object in view, the only ones a landmark can be
    # ("left of the vase" needs a single vase, else "left of the grey vase"); None = no
    # scene known, any noun phrase
    landmarks: list[str] | None = None
    superlatives: list[str] = field(default_factory=lambda: list(SUPERLATIVES))

    @classmethod
    def from_scene(cls, scene: object, mark_ids: Iterable[int] | None = None) -> SceneVocabulary:
        """Categories and colours of the objects in a Scene (anything with ``.objects``
        whose items have ``.category`` and ``.color_name``), plus the marks on screen
        (default: the objects' instance ids)."""
        objects = list(getattr(scene, 'objects', []) or [])
        pairs = [(str(getattr(o, 'color_name', '')), str(getattr(o, 'category', '')))
                 for o in objects]
        if mark_ids is None:
            mark_ids = [int(getattr(o, 'instance_id', i + 1)) for i, o in enumerate(objects)]
        return cls.from_objects(pairs, mark_ids)

    @classmethod
    def from_objects(cls, objects: Iterable[tuple[str, str]],
                     mark_ids: Iterable[int] = ()) -> SceneVocabulary:
        """(colour, category) pairs in view -> vocabulary. Ordinals go as far as the most
        repeated category needs ("the third mug" only when there are three mugs)."""
        pairs = [(_clean(c), _clean(k)) for c, k in objects]
        counts: dict[str, int] = {}
        for _, k in pairs:
            counts[k] = counts.get(k, 0) + 1
        n_ord = max(2, min(len(ORDINALS), max(counts.values(), default=1)))
        landmarks = [k for k in _unique(k for _, k in pairs) if k and counts[k] == 1]
        landmarks += [f'{c} {k}' for c, k in _unique(pairs)
                      if c and k and counts[k] > 1 and pairs.count((c, k)) == 1]
        return cls(categories=_unique(k for _, k in pairs if k),
                   colours=_unique(c for c, _ in pairs if c),
                   mark_ids=sorted({int(m) for m in mark_ids if 0 <= int(m) <= MAX_MARK}),
                   ordinals=list(ORDINALS[:n_ord]),
                   pairs=_unique((c, k) for c, k in pairs if c and k),
                   landmarks=landmarks)

    def words(self) -> set[str]:
        """Every word the grammar may emit (for the pronunciation check)."""
        out: set[str] = set()
        phrases = (list(self.categories) + list(self.colours) + list(self.relations)
                   + list(self.ordinals) + list(self.superlatives)
                   + [p for ps in ACTIONS.values() for p in ps]
                   + [number_to_words(m) for m in self.mark_ids]
                   + ['the', 'mark', 'number', 'between', 'and', 'from', 'left', 'right'])
        for phrase in phrases:
            out.update(phrase.split())
        return out

    def to_dict(self) -> dict:
        return {'categories': list(self.categories), 'colours': list(self.colours),
                'mark_ids': list(self.mark_ids), 'ordinals': list(self.ordinals),
                'pairs': [list(p) for p in self.pairs], 'landmarks': self.landmarks}


def default_vocabulary() -> SceneVocabulary:
    """Every category and colour the scene generator can produce, marks 1..20.

    Used when no scene is known yet (CLI without ``--grammar-from-scene``): still a
    grammar, so still far better than free decoding, just a larger one.
    """
    categories, colours = list(DEFAULT_CATEGORIES), list(DEFAULT_COLOURS)
    try:  # the generator owns the lists
        from spatial_llava_ros import scene as _scene

        categories = _phrases_of(getattr(_scene, 'CATEGORIES', None)) or categories
        colours = _phrases_of(getattr(_scene, 'COLORS', None)) or colours
    except ImportError:  # a trimmed install without the generator: the fallback lists
        pass
    return SceneVocabulary(categories=categories, colours=colours, mark_ids=list(range(1, 21)))


def _phrases_of(value: object) -> list[str]:
    if value is None:
        return []
    items = list(value.keys()) if isinstance(value, dict) else list(value)
    return _unique(_clean(str(getattr(i, 'name', i))) for i in items)


def _clean(text: str) -> str:
    return ' '.join(re.sub(r'[_\-]+', ' ', str(text).lower()).split())


def _unique(items: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for item in items:
        seen.setdefault(item, None)
    return list(seen)


def _alt(phrases: Iterable[str]) -> str:
    return ' | '.join(sorted(set(phrases)))


@dataclass
class CommandGrammar:
    """A JSGF grammar plus what was left out of it (words the dictionary cannot say)."""

    jsgf: str
    vocabulary: SceneVocabulary
    dropped: list[str]


def build_jsgf(vocab: SceneVocabulary, known_words: set[str] | None = None) -> CommandGrammar:
    """Command patterns over the vocabulary, as a JSGF grammar string.

    ``known_words``: the recogniser's pronunciation dictionary; phrases with a word it
    cannot pronounce are dropped (and listed in ``dropped``) instead of failing the load.
    """
    dropped: list[str] = []

    def keep(phrases: Iterable[str]) -> list[str]:
        out = []
        for phrase in phrases:
            words = phrase.split()
            if not words or not all(_WORD.match(w) for w in words):
                dropped.append(phrase)
            elif known_words is not None and not all(w in known_words for w in words):
                dropped.append(phrase)
            else:
                out.append(phrase)
        return _unique(out)

    categories = keep(vocab.categories)
    if not categories:
        raise ValueError(f'no speakable category in {vocab.categories!r}; dropped {dropped!r}')
    colours = keep(vocab.colours)
    ordinals = keep(vocab.ordinals)
    superlatives = keep(vocab.superlatives)
    relations = keep(vocab.relations)
    actions = keep(p for ps in ACTIONS.values() for p in ps)
    numbers = keep(number_to_words(m) for m in vocab.mark_ids)

    spoken = set(categories) | set(colours)
    pairs = [f'{c} {k}' for c, k in vocab.pairs if c in spoken and k in spoken]
    if pairs:  # the scene says which colour goes with which category
        simple = '<simple> = the (<noun> | <coloured>);'
        coloured_ord, coloured_sup = '(<noun> | <coloured>)', '(<noun> | <coloured>)'
    elif colours:
        simple = '<simple> = the [<colour>] <noun>;'
        coloured_ord = coloured_sup = '[<colour>] <noun>'
    else:
        simple = '<simple> = the <noun>;'
        coloured_ord = coloured_sup = '<noun>'
    if vocab.landmarks is None:
        landmark = '<landmark> = <simple>;'
    else:
        named = keep(vocab.landmarks)
        landmark = f'<landmark> = the ({_alt(named)});' if named else ''
    relation = ('<relation> = between <landmark> and <landmark>'
                + (' | <binary> <landmark>' if relations else '') + ';') if landmark else ''
    rules = [
        '#JSGF V1.0;',
        'grammar command;',
        'public <command> = <action> <target>'
        + (' | [<action>] <mark>;' if numbers else ';'),
        f'<action> = {_alt(actions)};',
        # ordinals only with "from the left/right", superlatives alone, else a relation:
        # each extra path is one more way to mishear (measured: "the closest bed from the
        # left" for "the first bed from the left" when any modifier could take any tail)
        '<target> = <simple>' + (' [<relation>]' if relation else '')
        + (f' | the <ordinal> {coloured_ord} from the (left | right)' if ordinals else '')
        + (f' | the <superlative> {coloured_sup}' if superlatives else '') + ';',
        simple,
        # landmarks: only what picks out one object (as the generator and people name them)
        relation,
        landmark,
        f'<binary> = {_alt(relations)};' if relations else '',
        f'<noun> = {_alt(categories)};',
        f'<colour> = {_alt(colours)};' if colours and not pairs else '',
        f'<coloured> = {_alt(pairs)};' if pairs else '',
        f'<ordinal> = {_alt(ordinals)};' if ordinals else '',
        f'<superlative> = {_alt(superlatives)};' if superlatives else '',
        f'<mark> = mark [number] ({_alt(numbers)});' if numbers else '',
    ]
    return CommandGrammar('\n'.join(r for r in rules if r) + '\n', vocab, _unique(dropped))
