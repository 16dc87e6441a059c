"""Scoring every mark for the families that bring their own processor and chat template:
LLaVA-NeXT, Qwen2-VL, Qwen2.5-VL and Idefics3 (SmolVLM).

Same contract as ``Resolver`` (one probability per present mark, exact multi-digit answers,
the frame prefix's KV cache reused by follow-up queries, queries batched on one frame), with
the parts that differ per family taken from the family itself:

- the prompt is config/prompt.yaml's wording rendered by the checkpoint's chat template
  (``families.ChatPrompt``), and the answer ends with that template's end-of-turn token;
- the image goes through the family's processor (anyres tiles for LLaVA-NeXT, dynamic
  resolution for Qwen2-VL, image splitting for Idefics3), so the number of image tokens is
  the one the processor writes for this frame, and the model's own forward merges the
  features (``input_ids`` + ``pixel_values``);
- positions: 1D for LLaVA-NeXT and Idefics3; for Qwen2-VL the prefix gets the model's own
  M-RoPE positions (``get_rope_index``) and every text token after it the same position on
  all three rows, continuing from the prefix's largest position + 1, which is what Qwen2-VL
  gives text after an image. Because of that the token tree (tree.py: a 4D mask and
  per-branch positions) is exact for all four families: a follow-up query is one pass over
  the cached prefix, and several queries on one frame share one tree.
- a new frame: by default the prefix runs once as a plain causal pass (sdpa's fused kernel;
  these prefixes are 400-2,400 tokens long) and the tree then runs on its cache; with
  ``one_pass = True`` both run in ONE forward under a (P+T)^2 4D mask, as for LLaVA-1.5.
  Both give the same numbers (tested); bench_families.py times both.
"""

from __future__ import annotations

import inspect

import numpy as np
import torch

from spatial_llava_ros.errors import InputError, ResolveError
from spatial_llava_ros.model.families import FAMILIES, ChatPrompt
from spatial_llava_ros.model.image import check_image
from spatial_llava_ros.model.loading import LoadedModel
from spatial_llava_ros.model.prompt import PromptTemplate
from spatial_llava_ros.model.resolver import (
    ANSWER_RESERVE,
    FrameCache,
    Resolution,
    Resolver,
    _restore,
    check_marks,
    check_queries,
    frame_key,
)
from spatial_llava_ros.model.tree import additive_mask, build_tree


class ChatResolver(Resolver):
    """``Resolver`` for a checkpoint with its own chat template and image processor."""

    def __init__(
        self,
        loaded: LoadedModel,
        template: PromptTemplate | None = None,
        abstain_threshold: float = 0.0,
        vision=None,
        frame_cache_size: int = 1,
        preprocess: str = 'processor',
    ) -> None:
        fam = FAMILIES[loaded.family]
        if vision is not None:
            raise InputError(f"a separate vision backend (ONNX) replaces LLaVA-1.5's tower "
                             f'only; {fam.label} runs its own')
        if preprocess != 'processor':
            raise InputError(f"preprocess={preprocess!r} is LLaVA-1.5 only; {fam.label} "
                             "uses its own processor ('processor')")
        if not 0.0 <= abstain_threshold <= 1.0:
            raise InputError(f'abstain_threshold must be in [0, 1], got {abstain_threshold}')
        self.family = fam
        self.loaded = loaded
        self.model = loaded.model
        self.tokenizer = loaded.tokenizer
        self.processor = loaded.processor
        self.template = template or PromptTemplate.for_model(loaded.path)
        self.chat = ChatPrompt(self.processor, self.template)
        self.abstain_threshold = float(abstain_threshold)
        self.vision = None
        self.frame_cache_size = max(0, int(frame_cache_size))
        self.preprocess = preprocess
        self.num_image_tokens = None  # set per frame by the processor
        self.image_token_id = int(loaded.image_token_id)
        self.device = loaded.device
        self.dtype = next(self.model.parameters()).dtype
        end = self._ids(self.chat.end_text)
        self.eos_id = end[0] if end else self.tokenizer.eos_token_id
        if self.template.score_eos and self.eos_id is None:
            raise InputError('prompt score_eos is set but the chat template ends an assistant '
                             'turn with nothing and the tokenizer has no eos token')
        params = inspect.signature(self.model.forward).parameters
        self._cache_kw = 'cache' if 'cache' in params else 'past_key_values'
        self._forward_keys = set(params)
        self._embed = self.model.get_input_embeddings()
        self._max_positions = int(self.model.config.get_text_config().max_position_embeddings)
        from collections import OrderedDict
        from threading import Lock

        self._frames: OrderedDict[str, FrameCache] = OrderedDict()
        self._answer_ids: dict[int, list[int]] = {}
        self._lock = Lock()
        # New frame: False = a causal prefix pass then the tree on its cache (default: the
        # long prefixes of these families run the fused causal attention kernel, see
        # bench_families.py); True = ONE pass over prefix + tree under a 4D mask.
        self.one_pass = False

    # ---- tokens -------------------------------------------------------------------------

    def answer_ids(self, mark: int) -> list[int]:
        """Mark digits as the chat template writes them, then its end-of-turn token."""
        ids = self._answer_ids.get(mark)
        if ids is None:
            tail = self.chat.query_tail()
            ids = self._continuation(self._ids(tail), tail, self.chat.answer_text(mark))
            if self.template.score_eos:
                ids = ids + [self.eos_id]
            unk = self.tokenizer.unk_token_id
            if not ids or (unk is not None and unk in ids):
                raise ResolveError(f'the tokenizer cannot spell mark {mark}: tokens {ids}')
            self._answer_ids[mark] = ids
        return ids

    def prefix_ids(self, frame_text: str) -> list[int]:
        raise ResolveError(f'{self.family.label}: the prefix depends on the frame (its image '
                           'tokens come from the processor); use frame_inputs(image, text)')

    def query_ids(self, frame, query: str) -> list[int]:
        """Tokens of one query after the frame (``frame``: FrameCache or (ids, text, base))."""
        if isinstance(frame, FrameCache):
            ctx_ids, ctx, base = frame.context_ids, frame.frame_text, frame.position_base
        else:
            ctx_ids, ctx, base = frame
        ids = self._continuation(ctx_ids, ctx, self.chat.query_text(query))
        if self.image_token_id in ids:
            raise InputError(f'query {query[:60]!r} contains the image token: only the frame '
                             'carries an image')
        budget = self._max_positions - base - ANSWER_RESERVE
        if len(ids) > budget:
            raise InputError(f'query is {len(ids)} tokens; the model context of '
                             f'{self._max_positions} leaves {budget} after the frame prefix '
                             f'(positions 0..{base - 1})')
        return ids

    # ---- model --------------------------------------------------------------------------

    def frame_inputs(self, image: np.ndarray, text: str) -> tuple[list[int], dict]:
        """The processor's token ids (image tokens expanded) and image tensors for a text."""
        check_image(image)
        images = [[image]] if self.family.model_type == 'idefics3' else [image]
        try:
            enc = self.processor(text=[text], images=images, return_tensors='pt')
        except Exception as exc:  # noqa: BLE001 - a processor failure is one clear error
            raise ResolveError(f'{self.family.label} processor failed on a {image.shape} '
                               f'frame: {exc}') from exc
        ids = enc['input_ids'][0].tolist()
        n_img = ids.count(self.image_token_id)
        if n_img == 0:
            raise ResolveError(f'the {self.family.label} processor wrote no image token '
                               f'(id {self.image_token_id}) for the frame')
        mm = {}
        for k, v in enc.items():
            if k in ('input_ids', 'attention_mask') or not torch.is_tensor(v):
                continue
            v = v.to(self.device)
            mm[k] = v.to(self.dtype) if v.is_floating_point() else v
        return ids, mm

    def _prefix_positions(self, ids: list[int], mm: dict) -> tuple[torch.Tensor, int]:
        """(rows, P) positions of the prefix and the first position after it."""
        if not self.family.mrope:
            return torch.arange(len(ids))[None], len(ids)
        inner = self.model.model
        kw = {k: mm[k] for k in ('mm_token_type_ids', 'image_grid_thw') if k in mm}
        pos, _ = inner.get_rope_index(torch.tensor([ids], device=self.device), **kw)
        pos = pos[:, 0].cpu()
        return pos, int(pos.max()) + 1

    def _rows(self, positions: torch.Tensor) -> torch.Tensor:
        return positions.expand(3 if self.family.mrope else 1, -1)

    def _forward_ids(self, ids, mask, positions, cache, keep, mm=None) -> torch.Tensor:
        pos = positions.to(self.device)
        pos = pos[:, None, :] if self.family.mrope else pos
        extra = {k: v for k, v in (mm or {}).items() if k in self._forward_keys}
        out = self.model(
            input_ids=ids.to(self.device)[None],
            attention_mask=None if mask is None else mask.to(self.device),
            position_ids=pos,
            use_cache=cache is not None,
            logits_to_keep=keep.to(self.device),
            **{self._cache_kw: cache},
            **extra,
        )
        return out.logits[0]

    def _encode_prefix(self, prefix: list[int], pos: torch.Tensor, mm: dict):
        """A fresh KV cache holding the frame prefix (plain causal pass, fused kernel)."""
        cache = self._new_cache()
        self._forward_ids(torch.tensor(prefix), None, self._rows(pos), cache,
                          torch.tensor([len(prefix) - 1]), mm)
        return cache

    def _keep(self, frame: FrameCache, base: int, n_img: int) -> FrameCache:
        frame.position_base = base
        frame.image_tokens = n_img
        return frame

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
            frame_text = self.chat.frame_text(list(marks))
            prefix, mm = self.frame_inputs(image, frame_text)
            pos, base = self._prefix_positions(prefix, mm)
            cache = self._encode_prefix(prefix, pos, mm)
            frame = self._remember(key, marks, len(prefix), cache, frame_text)
            return self._keep(frame, base, prefix.count(self.image_token_id))

    @torch.inference_mode()
    def score_frame(self, frame: FrameCache, queries: list[str]) -> list[Resolution]:
        """Score queries on an encoded frame: one forward over only the query + answer tokens."""
        queries = check_queries(queries)
        cands = [self.answer_ids(m) for m in frame.mark_ids]
        tree = build_tree([self.query_ids(frame, q) for q in queries], cands)
        mask = additive_mask(frame.prefix_len, tree, with_prefix_queries=False, dtype=self.dtype)
        with self._lock:
            try:
                logits = self._forward_ids(tree.ids, mask,
                                           self._rows(frame.position_base + tree.depth[None]),
                                           frame.cache, tree.logit_pos)
            finally:
                _restore(frame.cache, frame.snapshot)
        return self._score_tree(logits, tree, frame.mark_ids, queries)

    @torch.inference_mode()
    def score_batch(
        self, image: np.ndarray, mark_ids: list[int], queries: list[str]
    ) -> list[Resolution]:
        """Queries that arrived together on one frame. A new frame's prefix is encoded once
        (causal) and every query and answer scored as a token tree on its cache, which stays
        for follow-up queries; ``one_pass = True`` does both in one forward under a 4D mask."""
        check_image(image)
        marks = check_marks(mark_ids)
        queries = check_queries(queries)
        key = frame_key(image, marks)
        frame = self._frames.get(key)
        if frame is not None:
            return self.score_frame(frame, queries)
        frame_text = self.chat.frame_text(list(marks))
        cands = [self.answer_ids(m) for m in marks]
        with self._lock:
            prefix, mm = self.frame_inputs(image, frame_text)
            pos, base = self._prefix_positions(prefix, mm)
            ctx = (self._ids(frame_text), frame_text, base)
            tree = build_tree([self.query_ids(ctx, q) for q in queries], cands)
            p = len(prefix)
            if not self.one_pass:  # causal prefix (fused kernel), then the tree on its cache
                cache = self._encode_prefix(prefix, pos, mm)
                mask = additive_mask(p, tree, with_prefix_queries=False, dtype=self.dtype)
                logits = self._forward_ids(tree.ids, mask, self._rows(base + tree.depth[None]),
                                           cache, tree.logit_pos)
                if self.frame_cache_size:
                    frame = self._remember(key, marks, p, cache, frame_text)
                    self._keep(frame, base, prefix.count(self.image_token_id))
                return self._score_tree(logits, tree, marks, queries)
            ids = torch.cat([torch.tensor(prefix), tree.ids])
            positions = torch.cat([self._rows(pos), self._rows(base + tree.depth[None])], dim=1)
            mask = additive_mask(p, tree, with_prefix_queries=True, dtype=self.dtype)
            cache = self._new_cache() if self.frame_cache_size else None
            logits = self._forward_ids(ids, mask, positions, cache, p + tree.logit_pos, mm)
            if cache is not None:
                frame = self._remember(key, marks, p, cache, frame_text)
                self._keep(frame, base, prefix.count(self.image_token_id))
        return self._score_tree(logits, tree, marks, queries)

    def image_tokens(self, image: np.ndarray) -> int:
        """How many image tokens the processor writes for this frame."""
        ids, _ = self.frame_inputs(image, self.chat.frame_text([1]))
        return ids.count(self.image_token_id)

    def generate_inputs(self, image: np.ndarray, question: str) -> dict[str, torch.Tensor]:
        """Processor inputs for ``generate``: the question in the family's chat template."""
        ids, mm = self.frame_inputs(image, self.chat.question_text(question))
        input_ids = torch.tensor([ids], device=self.device)
        return {'input_ids': input_ids, 'attention_mask': torch.ones_like(input_ids), **mm}

    def pixel_values(self, image: np.ndarray) -> torch.Tensor:
        raise ResolveError(f"{self.family.label} takes its processor's image tensors: use "
                           'frame_inputs(image, text)')
