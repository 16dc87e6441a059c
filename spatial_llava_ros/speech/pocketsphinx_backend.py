"""CMU PocketSphinx: the offline default (its wheel ships the en-us acoustic model).

Free decoding uses the shipped trigram language model; scene-aware decoding swaps in a
JSGF grammar built from the scene (``set_vocabulary``). Grammar decoding always finds
*some* path through the grammar, so the confidence here is an utterance-verification
score: how close the grammar path's acoustic score comes to an unconstrained phone loop
on the same audio (1.0 = the grammar explains the audio as well as free phones do).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from spatial_llava_ros.errors import ModelLoadError
from spatial_llava_ros.speech.audio import float_to_int16
from spatial_llava_ros.speech.backend import Recognition, SpeechBackend
from spatial_llava_ros.speech.grammar import CommandGrammar, SceneVocabulary, build_jsgf

# log-likelihood gap per frame (nats) at which the verification confidence falls to 1/e;
# chosen on the synthetic test set (see bench/results/speech.json).
VERIFY_SCALE = 1.0


def _model_dir(model_dir: str | Path | None) -> Path:
    if model_dir is None:
        try:
            import pocketsphinx
        except ImportError as exc:
            raise ModelLoadError(
                'pocketsphinx is not installed; pip install "spatial_llava_ros[speech]"'
            ) from exc
        return Path(pocketsphinx.get_model_path()) / 'en-us'
    path = Path(model_dir)
    if not path.is_dir():
        raise ModelLoadError(f'pocketsphinx model directory not found: {path}')
    return path


class PocketsphinxBackend(SpeechBackend):
    """PocketSphinx with a swappable search: language model or scene grammar."""

    name = 'pocketsphinx'

    def __init__(self, model_dir: str | Path | None = None, verify: bool = True) -> None:
        from pocketsphinx import Decoder

        root = _model_dir(model_dir)
        hmm, lm, dic = root / 'en-us', root / 'en-us.lm.bin', root / 'cmudict-en-us.dict'
        for p in (hmm, lm, dic):
            if not p.exists():
                raise ModelLoadError(f'pocketsphinx model incomplete: {p} missing')
        self._root = root
        self._verify = verify
        try:
            # fsgusefiller=False: optional silences inside a grammar path let the decoder
            # swallow words as "silence" (measured: "go to the chair..." -> "go").
            self._decoder = Decoder(hmm=str(hmm), lm=str(lm), dict=str(dic),
                                    fsgusefiller=False, bestpath=True, loglevel='FATAL')
        except (RuntimeError, ValueError) as exc:
            raise ModelLoadError(f'pocketsphinx could not load {root}: {exc}') from exc
        self._phone_decoder = None
        self._words = _dictionary_words(dic)
        self._lm_search = self._decoder.current_search()  # '_default' in pocketsphinx 5
        self._search = self._lm_search
        self._fsg = None
        self._grammar_count = 0
        self.grammar: CommandGrammar | None = None

    @property
    def known_words(self) -> set[str]:
        return self._words

    def set_vocabulary(self, vocabulary: SceneVocabulary | None) -> None:
        old = self._search
        if vocabulary is None:
            self._decoder.activate_search(self._lm_search)
            self._search, self.grammar, self._fsg = self._lm_search, None, None
        else:
            grammar = build_jsgf(vocabulary, self._words)
            self._grammar_count += 1
            name = f'scene{self._grammar_count}'
            fsg = self._decoder.parse_jsgf(grammar.jsgf)
            self._decoder.add_fsg(name, fsg)
            self._decoder.activate_search(name)
            self._search, self.grammar, self._fsg = name, grammar, fsg
        if old not in (self._lm_search, self._search):
            self._decoder.remove_search(old)

    def recognize(self, audio: np.ndarray) -> Recognition:
        pcm = float_to_int16(audio).tobytes()
        decoder = self._decoder
        decoder.start_utt()
        decoder.process_raw(pcm, full_utt=True)
        decoder.end_utt()
        hyp = decoder.hyp()
        if hyp is None or not hyp.hypstr.strip():
            return Recognition('', 0.0, [])
        words = [_base(s.word) for s in decoder.seg() if _is_word(s.word)]
        text = ' '.join(words)
        if self._fsg is not None and not self._fsg.accept(text):
            # no path reached the grammar's end: pocketsphinx returns the best partial
            # path ("pick up" for "mark one"); that is not a command.
            return Recognition('', 0.0, words)
        if self.grammar is None or not self._verify:
            return Recognition(text, float(min(max(hyp.prob, 0.0), 1.0)), words)
        return Recognition(text, self._verify_score(pcm, decoder), words)

    def _verify_score(self, pcm: bytes, decoder: object) -> float:
        """exp(-(phone-loop score - grammar score) / frames / VERIFY_SCALE), in 0..1."""
        grammar_ascr = _log_ascore(decoder.seg())
        frames = max(decoder.n_frames(), 1)
        phones = self._phones()
        phones.start_utt()
        phones.process_raw(pcm, full_utt=True)
        phones.end_utt()
        phone_ascr = _log_ascore(phones.seg())
        gap = max(0.0, (phone_ascr - grammar_ascr) / frames)
        return float(math.exp(-gap / VERIFY_SCALE))

    def _phones(self):  # noqa: ANN202 - pocketsphinx Decoder
        if self._phone_decoder is None:
            from pocketsphinx import Decoder

            root = self._root
            self._phone_decoder = Decoder(hmm=str(root / 'en-us'), lm=None,
                                          allphone=str(root / 'en-us-phone.lm.bin'),
                                          dict=str(root / 'cmudict-en-us.dict'),
                                          bestpath=False, loglevel='FATAL')
        return self._phone_decoder


def _log_ascore(segments: object) -> float:
    """Sum of natural-log acoustic scores (the bindings hand out exp'd densities)."""
    return float(sum(math.log(max(s.ascore, 1e-300)) for s in segments))


def _base(word: str) -> str:
    return word.split('(')[0]


def _is_word(word: str) -> bool:
    return not (word.startswith('<') or word.startswith('[') or word.startswith('(')
                or word.startswith('+'))


def _dictionary_words(path: Path) -> set[str]:
    words: set[str] = set()
    with open(path, encoding='utf-8', errors='replace') as handle:
        for line in handle:
            head = line.split(' ', 1)[0]
            if head:
                words.add(_base(head))
    return words


