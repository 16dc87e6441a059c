"""Which mark is {query}? Spatial-LLaVA scoring of every mark in one forward pass.

Scoring mode: the prompt (config/prompt.yaml) ends where the assistant names a mark. For
each mark present in the frame the exact probability of its answer ("12" + end of
sequence) is computed, all marks in the same forward pass (a token tree with a 4D mask, see
``tree.py``), then normalised over the present marks only. The image + instruction prefix
is encoded once per marked frame and its KV cache reused for every later query on it.
"""

from __future__ import annotations

import inspect
import threading
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from spatial_llava_ros.errors import InputError, ResolveError
from spatial_llava_ros.model.image import check_image, pixel_values, torch_pixel_values
from spatial_llava_ros.model.loading import LoadedModel, load_model
from spatial_llava_ros.model.prompt import IMAGE_PLACEHOLDER, PromptTemplate
from spatial_llava_ros.model.tree import TokenTree, additive_mask, build_tree
from spatial_llava_ros.model.vision import TorchVision, VisionEncoder, num_image_tokens

# context positions kept free for the answer (mark digits + end of sequence)
ANSWER_RESERVE = 8


@dataclass
class Resolution:
    """Result of one query: a probability per present mark (summing to 1), best first."""

    query: str
    best_id: int | None
    confidence: float
    scores: dict[int, float]
    ranked: list[tuple[int, float]]
    abstained: bool
    reason: str = ''
    log_likelihoods: dict[int, float] = field(default_factory=dict)  # log P(answer | prompt)
    probabilities: bool = True  # False: a server that only generates (confidence is NaN)
    scoring: str = 'local'  # which path scored it: local | systemone | logprobs | generate


@dataclass
class FrameCache:
    """KV cache of one marked frame's image + instruction prefix, reused across queries."""

    key: str
    mark_ids: tuple[int, ...]
    prefix_len: int
    cache: object  # transformers DynamicCache, restored to the prefix after every query
    snapshot: list[tuple[torch.Tensor, torch.Tensor]]
    frame_text: str
    context_ids: list[int]  # tokens of frame_text without special tokens (query context)
    position_base: int | None = None  # first position after the prefix (M-RoPE: not P)
    image_tokens: int | None = None  # image tokens in the prefix (families with dynamic ones)

    def nbytes(self) -> int:
        return sum(k.numel() * k.element_size() * 2 for k, _ in self.snapshot)


def frame_key(image: np.ndarray, mark_ids: list[int] | tuple[int, ...]) -> str:
    """Checksum of the marked image and its marks, to recognise a frame already encoded.

    CRC-32 + Adler-32 (64 bits, ~0.5 ms for a 640x480 frame; blake2b takes ~1.7 ms) is
    plenty to tell the last few frames apart; callers that keep the ``FrameCache`` from
    ``encode_frame`` and call ``score_frame`` skip this altogether.
    """
    data = np.ascontiguousarray(image).data
    return f'{image.shape}|{tuple(mark_ids)}|{zlib.crc32(data):08x}{zlib.adler32(data):08x}'


def check_marks(mark_ids) -> tuple[int, ...]:
    try:
        marks = tuple(int(m) for m in mark_ids)
    except (TypeError, ValueError) as exc:
        raise InputError(f'mark ids must be integers, got {mark_ids!r}') from exc
    if not marks:
        raise InputError('no marks in the frame: nothing to resolve (0 mark ids)')
    bad = [m for m in marks if m < 1]
    if bad:
        raise InputError(f'mark ids must be >= 1, got {bad}')
    if len(set(marks)) != len(marks):
        dup = sorted({m for m in marks if marks.count(m) > 1})
        raise InputError(f'duplicate mark ids {dup} in {list(marks)}')
    return marks


def check_query(query) -> str:
    if not isinstance(query, str) or not query.strip():
        raise InputError(f'query must be a non-empty string, got {query!r}')
    return query.strip()


def check_queries(queries) -> list[str]:
    if isinstance(queries, str):
        raise InputError('queries must be a list of strings, got one string (use score())')
    queries = [check_query(q) for q in queries]
    if not queries:
        raise InputError('no queries to score (0 given)')
    return queries


class Resolver:
    """Scores the marks of a Set-of-Marks frame for spatial referring expressions.

    Not re-entrant: one call runs at a time (a lock guards the shared KV cache).
    ``Resolver(loaded)`` of a LLaVA-NeXT, Qwen2-VL / Qwen2.5-VL or Idefics3 checkpoint is a
    ``ChatResolver`` (``chat_resolver.py``): same API, the family's own processor and template.
    """

    def __new__(cls, loaded: LoadedModel, *args, **kwargs):
        if cls is Resolver and getattr(loaded, 'family', 'llava') != 'llava':
            from spatial_llava_ros.model.chat_resolver import ChatResolver

            return super().__new__(ChatResolver)
        return super().__new__(cls)

    def __init__(
        self,
        loaded: LoadedModel,
        template: PromptTemplate | None = None,
        abstain_threshold: float = 0.0,
        vision: VisionEncoder | None = None,
        frame_cache_size: int = 1,
        preprocess: str = 'processor',
    ) -> None:
        if preprocess not in ('processor', 'torch'):
            raise InputError(f"preprocess must be 'processor' or 'torch', got {preprocess!r}")
        if not 0.0 <= abstain_threshold <= 1.0:
            raise InputError(f'abstain_threshold must be in [0, 1], got {abstain_threshold}')
        self.loaded = loaded
        self.model = loaded.model
        self.tokenizer = loaded.tokenizer
        self.template = template or PromptTemplate.for_model(loaded.path)
        self.abstain_threshold = float(abstain_threshold)
        self.vision = vision or TorchVision(self.model)
        self.frame_cache_size = max(0, int(frame_cache_size))
        self.preprocess = preprocess
        self.num_image_tokens = num_image_tokens(self.model.config)
        self.image_token_id = int(self.model.config.image_token_id)
        self.device = loaded.device
        self.dtype = next(self.model.parameters()).dtype
        self.eos_id = self.tokenizer.eos_token_id
        if self.template.score_eos and self.eos_id is None:
            raise InputError('prompt score_eos is set but the tokenizer has no eos token')
        params = inspect.signature(self.model.forward).parameters
        self._cache_kw = 'cache' if 'cache' in params else 'past_key_values'
        self._embed = self.model.get_input_embeddings()
        self._frames: OrderedDict[str, FrameCache] = OrderedDict()
        self._answer_ids: dict[int, list[int]] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        template: PromptTemplate | None = None,
        abstain_threshold: float = 0.0,
        **load_kwargs,
    ) -> Resolver:
        """Load a local checkpoint (see ``load_model``) and wrap it."""
        return cls(load_model(path, **load_kwargs), template, abstain_threshold)

    # ---- tokens -------------------------------------------------------------------------

    def _ids(self, text: str, special: bool = False) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=special)['input_ids'])

    def _continuation(self, context_ids: list[int], context: str, text: str) -> list[int]:
        """Tokens of ``text`` as they come after ``context`` (same merges as in training)."""
        full = self._ids(context + text)
        n = len(context_ids)
        if full[:n] == context_ids and len(full) > n:
            return full[n:]
        return self._ids(text)

    def answer_ids(self, mark: int) -> list[int]:
        """The exact tokens of the answer naming ``mark`` (digits, then eos when scored)."""
        ids = self._answer_ids.get(mark)
        if ids is None:
            tail = self.template.query_tail()
            ids = self._continuation(self._ids(tail), tail, self.template.answer_text(mark))
            if self.template.score_eos:
                ids = ids + [self.eos_id]
            unk = self.tokenizer.unk_token_id
            if unk is not None and unk in ids:
                raise ResolveError(f'the tokenizer cannot spell mark {mark}: tokens {ids}')
            self._answer_ids[mark] = ids
        return ids

    def prefix_ids(self, frame_text: str) -> list[int]:
        """Frame prefix tokens with <image> expanded to one token per image feature."""
        ids = self._ids(frame_text, special=True)
        n_img = ids.count(self.image_token_id)
        if n_img != 1:
            raise ResolveError(
                f'frame prefix must hold exactly one {IMAGE_PLACEHOLDER} token, found {n_img}'
            )
        i = ids.index(self.image_token_id)
        return ids[:i] + [self.image_token_id] * self.num_image_tokens + ids[i + 1 :]

    def query_ids(self, frame: FrameCache | tuple[list[int], str], query: str) -> list[int]:
        ctx_ids, ctx = (
            (frame.context_ids, frame.frame_text) if isinstance(frame, FrameCache) else frame
        )
        ids = self._continuation(ctx_ids, ctx, self.template.query_text(query))
        if self.image_token_id in ids:
            raise InputError(f'query {query[:60]!r} contains the image token: only the frame '
                             'carries an image')
        positions = int(self.model.config.text_config.max_position_embeddings)
        budget = positions - self.num_image_tokens - len(ctx_ids) - ANSWER_RESERVE
        if len(ids) > budget:
            raise InputError(f'query is {len(ids)} tokens; the model context of {positions} '
                             f'leaves {budget} after {self.num_image_tokens} image and '
                             f'{len(ctx_ids)} instruction tokens')
        return ids

    # ---- model --------------------------------------------------------------------------

    def pixel_values(self, image: np.ndarray) -> torch.Tensor:
        """(1, 3, S, S) model input: the HF processor (exact) or the same steps in torch
        on the model's device (``preprocess='torch'``, much faster for camera frames)."""
        proc = self.loaded.processor.image_processor
        if self.preprocess == 'processor':
            return pixel_values(proc, image)
        size = self.model.config.vision_config.image_size
        return torch_pixel_values(image, size, proc.image_mean, proc.image_std, self.device)

    def _prefix_embeds(self, image: np.ndarray, prefix: list[int]) -> torch.Tensor:
        feats = self.vision(self.pixel_values(image))
        feats = feats.to(self.device, self.dtype)
        if feats.shape[1] != self.num_image_tokens:
            raise ResolveError(
                f'image tokens: {self.num_image_tokens}, features: {feats.shape[1]} '
                '(processor size and vision config disagree)'
            )
        ids = torch.tensor([prefix], device=self.device)
        embeds = self._embed(ids)
        pos = (ids[0] == self.image_token_id).nonzero()[:, 0]
        embeds[0, pos] = feats[0]
        return embeds

    def _forward(self, embeds, mask, positions, cache, keep) -> torch.Tensor:
        out = self.model(
            inputs_embeds=embeds,
            attention_mask=None if mask is None else mask.to(self.device),
            position_ids=positions.to(self.device)[None],
            use_cache=cache is not None,
            logits_to_keep=keep.to(self.device),
            **{self._cache_kw: cache},
        )
        return out.logits[0]

    @staticmethod
    def _new_cache():
        from transformers import DynamicCache

        return DynamicCache()

    def _score_tree(
        self, logits: torch.Tensor, tree: TokenTree, marks: tuple[int, ...], queries: list[str]
    ) -> list[Resolution]:
        logp = torch.log_softmax(logits.float(), dim=-1)
        tok_lp = logp.gather(1, tree.targets.to(logp.device)[:, None])[:, 0]
        seg = tree.segment.to(logp.device)
        total = torch.zeros(tree.num_queries * tree.num_candidates, device=logp.device)
        total.index_add_(0, seg, tok_lp)
        total = total.view(tree.num_queries, tree.num_candidates)
        probs = torch.softmax(total, dim=-1).cpu().tolist()
        lls = total.cpu().tolist()
        return [self._resolution(q, marks, p, ll) for q, p, ll in zip(queries, probs, lls)]

    def _resolution(
        self, query: str, marks: tuple[int, ...], probs: list[float], lls: list[float]
    ) -> Resolution:
        scores = dict(zip(marks, probs))
        ranked = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))
        best, conf = ranked[0]
        abstained = conf < self.abstain_threshold
        reason = (
            f'best mark {best} has p={conf:.3f} < threshold {self.abstain_threshold:.3f} '
            f'over {len(marks)} marks'
            if abstained
            else ''
        )
        return Resolution(
            query=query,
            best_id=None if abstained else best,
            confidence=conf,
            scores=scores,
            ranked=ranked,
            abstained=abstained,
            reason=reason,
            log_likelihoods=dict(zip(marks, lls)),
        )

    # ---- public API ---------------------------------------------------------------------

    @torch.inference_mode()
    def encode_frame(self, image: np.ndarray, mark_ids: list[int]) -> FrameCache:
        """Run the image + instruction prefix once and keep its KV cache for later queries."""
        check_image(image)
        marks = check_marks(mark_ids)
        key = frame_key(image, marks)
        with self._lock:
            frame = self._frames.get(key)
            if frame is not None:
                self._frames.move_to_end(key)
                return frame
            frame_text = self.template.frame_text(list(marks))
            prefix = self.prefix_ids(frame_text)
            embeds = self._prefix_embeds(image, prefix)
            p = len(prefix)
            cache = self._new_cache()
            # plain causal prefix: no custom mask, so sdpa can take its fused causal kernel
            self._forward(embeds, None, torch.arange(p), cache, torch.tensor([p - 1]))
            return self._remember(key, marks, p, cache, frame_text)

    def _remember(self, key, marks, p, cache, frame_text) -> FrameCache:
        snapshot = [(layer.keys[..., :p, :], layer.values[..., :p, :]) for layer in cache.layers]
        _restore(cache, snapshot)
        frame = FrameCache(
            key, marks, p, cache, snapshot, frame_text, self._ids(frame_text)
        )
        if self.frame_cache_size:
            self._frames[key] = frame
            while len(self._frames) > self.frame_cache_size:
                self._frames.popitem(last=False)
        return frame

    @torch.inference_mode()
    def score_frame(self, frame: FrameCache, queries: list[str]) -> list[Resolution]:
        """Score queries on an encoded frame: one forward over only the query + answer tokens."""
        queries = check_queries(queries)
        cands = [self.answer_ids(m) for m in frame.mark_ids]
        tree = build_tree([self.query_ids(frame, q) for q in queries], cands)
        p = frame.prefix_len
        mask = additive_mask(p, tree, with_prefix_queries=False, dtype=self.dtype)
        embeds = self._embed(tree.ids.to(self.device)[None])
        with self._lock:
            try:
                logits = self._forward(embeds, mask, p + tree.depth, frame.cache, tree.logit_pos)
            finally:
                _restore(frame.cache, frame.snapshot)
        return self._score_tree(logits, tree, frame.mark_ids, queries)

    @torch.inference_mode()
    def score_batch(
        self, image: np.ndarray, mark_ids: list[int], queries: list[str]
    ) -> list[Resolution]:
        """Score queries that arrived together on one frame.

        A frame seen before (same pixels and marks) reuses its KV cache; a new one is scored
        in ONE forward pass over image + instruction + every query and answer, which also
        leaves its prefix cache behind for follow-up queries.
        """
        check_image(image)
        marks = check_marks(mark_ids)
        queries = check_queries(queries)
        key = frame_key(image, marks)
        frame = self._frames.get(key)
        if frame is not None:
            return self.score_frame(frame, queries)
        frame_text = self.template.frame_text(list(marks))
        ctx = (self._ids(frame_text), frame_text)
        cands = [self.answer_ids(m) for m in marks]
        tree = build_tree([self.query_ids(ctx, q) for q in queries], cands)
        prefix = self.prefix_ids(frame_text)
        p = len(prefix)
        with self._lock:
            embeds = torch.cat(
                [self._prefix_embeds(image, prefix), self._embed(tree.ids.to(self.device)[None])],
                dim=1,
            )
            mask = additive_mask(p, tree, with_prefix_queries=True, dtype=self.dtype)
            positions = torch.cat([torch.arange(p), p + tree.depth])
            cache = self._new_cache() if self.frame_cache_size else None
            logits = self._forward(embeds, mask, positions, cache, p + tree.logit_pos)
            if cache is not None:
                self._remember(key, marks, p, cache, frame_text)
        return self._score_tree(logits, tree, marks, queries)

    def score(self, image: np.ndarray, mark_ids: list[int], query: str) -> Resolution:
        """Probability of every present mark for one query (one forward pass)."""
        return self.score_batch(image, mark_ids, [query])[0]

    def forget_frames(self) -> None:
        """Drop cached frames (frees their KV memory)."""
        with self._lock:
            self._frames.clear()

    @torch.inference_mode()
    def answer(
        self, image: np.ndarray, question: str, max_new_tokens: int = 64, **gen
    ) -> str:
        """Free-form answer (explanations, region descriptions) with ``model.generate``.

        This is the plain LLaVA path: processor -> generate -> decode, greedy by default.
        """
        check_image(image)
        question = check_query(question)
        if max_new_tokens < 1:
            raise InputError(f'max_new_tokens must be >= 1, got {max_new_tokens}')
        inputs = self.generate_inputs(image, question)
        gen.setdefault('do_sample', False)
        gen.setdefault('pad_token_id', self.tokenizer.pad_token_id)
        with self._lock:
            out = self.model.generate(**inputs, max_new_tokens=max_new_tokens, **gen)
        new = out[0, inputs['input_ids'].shape[1] :]
        return self.tokenizer.decode(new, skip_special_tokens=True).strip()

    def generate_inputs(self, image: np.ndarray, question: str) -> dict[str, torch.Tensor]:
        """Processor inputs for the generate path (text with <image>, padded-square image)."""
        text = self.template.question_text(question)
        ids = self.prefix_ids(text)
        pv = self.pixel_values(image)
        input_ids = torch.tensor([ids], device=self.device)
        return {
            'input_ids': input_ids,
            'attention_mask': torch.ones_like(input_ids),
            'pixel_values': pv.to(self.device, self.dtype),
        }


def _restore(cache, snapshot: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    """Put a DynamicCache back to the frame prefix (drops the query tokens just appended)."""
    for layer, (k, v) in zip(cache.layers, snapshot):
        layer.keys, layer.values = k, v
