"""Token packing for training: one image prefix, several answer branches, loss on answers only.

The resolver scores a query as ``frame prefix + query + " {mark}" + </s>`` with the prefix
(image and mark list) shared by every query on the frame. Training packs a frame's queries
the same way: each branch (query + answer) sees the prefix and its own earlier tokens only,
through a 4D attention mask, with position ids restarting after the prefix, so each is trained
exactly as the resolver later scores it, at one image encoding per frame instead of one per
query. Multi-turn conversations are a single branch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from spatial_llava_ros.errors import InputError
from spatial_llava_ros.model.prompt import PromptTemplate


@dataclass(frozen=True)
class Segment:
    """A piece of text in a branch; ``target`` pieces carry the loss, ``eos`` appends </s>."""

    text: str
    target: bool = False
    eos: bool = False


@dataclass
class Example:
    """One marked image with the prefix text (containing <image>) and its branches."""

    image: np.ndarray  # (H, W, 3) uint8 marked frame
    prefix: str
    branches: list[list[Segment]] = field(default_factory=list)
    pixel_values: torch.Tensor | None = None  # (3, S, S), cached preprocessing
    meta: dict = field(default_factory=dict)
    # Mark-reading targets: (image token index, token id) -- the LM state at the image patch
    # that holds a drawn number must predict that number (an auxiliary loss, see below).
    reading: list[tuple[int, int]] = field(default_factory=list)
    dense: torch.Tensor | None = None  # (heads, image tokens) per-patch targets, see dense.py


def grounding_example(image: np.ndarray, mark_ids: list[int], queries: list[tuple[str, int]],
                      template: PromptTemplate, meta: dict | None = None) -> Example:
    """The resolver's scoring format: one branch ``query -> " {mark}" </s>`` per query."""
    if not queries:
        raise InputError('grounding example with 0 queries')
    branches = [[Segment(template.query_text(q)),
                 Segment(template.answer_text(m), target=True, eos=template.score_eos)]
                for q, m in queries]
    return Example(image, template.frame_text(sorted(mark_ids)), branches, meta=meta or {})


def conversation_example(image: np.ndarray, conversations: list[dict],
                         template: PromptTemplate, meta: dict | None = None) -> Example:
    """A LLaVA ``conversations`` list in the template's free-answer (vicuna_v1) format."""
    if len(conversations) < 2 or len(conversations) % 2:
        raise InputError(f'conversation needs human/gpt pairs, got {len(conversations)} turns')
    segments: list[Segment] = []
    prefix = ''
    for i in range(0, len(conversations), 2):
        human, gpt = conversations[i], conversations[i + 1]
        if human.get('from') != 'human' or gpt.get('from') != 'gpt':
            raise InputError(f'turn {i}: expected human then gpt, got '
                             f'{human.get("from")!r}, {gpt.get("from")!r}')
        question = human['value'].replace('<image>\n', '').replace('<image>', '').strip()
        if i == 0:
            prefix = template.question_text(question)
        else:
            segments.append(Segment(f' USER: {question} ASSISTANT:'))
        segments.append(Segment(' ' + gpt['value'].strip(), target=True, eos=True))
    return Example(image, prefix, [segments], meta=meta or {})


@dataclass
class Batch:
    input_ids: torch.Tensor  # (B, L)
    position_ids: torch.Tensor  # (B, L)
    attention_mask: torch.Tensor  # (B, 1, L, L) additive float mask
    pixel_values: torch.Tensor  # (B, 3, S, S)
    pred_pos: torch.Tensor  # (K, 2) (batch row, position) whose logits predict a target
    targets: torch.Tensor  # (K,) target token ids
    answer_of: torch.Tensor  # (K,) answer index of each target (for exact-match accuracy)
    num_answers: int
    reading_pos: torch.Tensor | None = None  # (R, 2) image-token positions with a number
    reading_targets: torch.Tensor | None = None  # (R,) the number's first digit token
    dense_targets: torch.Tensor | None = None  # (B, heads, image tokens), see dense.py


class Packer:
    """Turns Examples into model-ready batches with the checkpoint's own tokenizer."""

    def __init__(self, tokenizer, image_token_id: int, image_seq_length: int,
                 image_processor=None, max_length: int = 2048) -> None:
        self.tok = tokenizer
        self.image_token_id = int(image_token_id)
        self.n_img = int(image_seq_length)
        self.image_processor = image_processor
        self.max_length = max_length
        self.eos = int(tokenizer.eos_token_id)
        self.pad = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos)

    def encode(self, text: str, special: bool = False) -> list[int]:
        return list(self.tok(text, add_special_tokens=special)['input_ids'])

    def prefix_ids(self, prefix: str) -> list[int]:
        ids = self.encode(prefix, special=True)
        n = ids.count(self.image_token_id)
        if n != 1:
            raise InputError(f'prefix must hold exactly one <image>, found {n}')
        at = ids.index(self.image_token_id)
        return ids[:at] + [self.image_token_id] * self.n_img + ids[at + 1:]

    def pixels(self, example: Example) -> torch.Tensor:
        if example.pixel_values is None:
            from spatial_llava_ros.model.image import pixel_values

            if self.image_processor is None:
                raise InputError('Packer has no image processor and the example no pixels')
            example.pixel_values = pixel_values(self.image_processor, example.image)[0]
        return example.pixel_values

    def sequence(self, example: Example):
        """ids, positions, branch id per token (-1 prefix), and (pred, target, answer) lists."""
        ids = self.prefix_ids(example.prefix)
        p = len(ids)
        pos = list(range(p))
        branch = [-1] * p
        preds: list[tuple[int, int, int]] = []  # (predicting index, target id, answer index)
        answer = 0
        for b, segments in enumerate(example.branches):
            parent = p - 1
            depth = p
            for seg in segments:
                seg_ids = self.encode(seg.text) + ([self.eos] if seg.eos else [])
                for tok in seg_ids:
                    if seg.target:
                        preds.append((parent, tok, answer))
                    parent = len(ids)
                    ids.append(tok)
                    pos.append(depth)
                    branch.append(b)
                    depth += 1
                if seg.target:
                    answer += 1
        if len(ids) > self.max_length:
            raise InputError(f'packed sequence has {len(ids)} tokens > max_length '
                             f'{self.max_length}; use fewer queries per frame')
        return ids, pos, branch, preds, answer

    def reading_positions(self, example: Example) -> list[tuple[int, int]]:
        """(sequence position, token) of the example's mark-reading targets."""
        if not example.reading:
            return []
        ids = self.encode(example.prefix, special=True)
        start = ids.index(self.image_token_id)
        return [(start + k, tok) for k, tok in example.reading if 0 <= k < self.n_img]

    def collate(self, examples: list[Example], dtype: torch.dtype = torch.float32) -> Batch:
        seqs = [self.sequence(ex) for ex in examples]
        length = max(len(s[0]) for s in seqs)
        bsz = len(seqs)
        input_ids = torch.full((bsz, length), self.pad, dtype=torch.long)
        position_ids = torch.zeros((bsz, length), dtype=torch.long)
        branch_t = torch.full((bsz, length), -2, dtype=torch.long)
        pred_pos, targets, answer_of = [], [], []
        answers = 0
        for r, (ids, pos, branch, preds, n_ans) in enumerate(seqs):
            n = len(ids)
            input_ids[r, :n] = torch.tensor(ids)
            position_ids[r, :n] = torch.tensor(pos)
            branch_t[r, :n] = torch.tensor(branch)
            for parent, tok, ans in preds:
                pred_pos.append((r, parent))
                targets.append(tok)
                answer_of.append(answers + ans)
            answers += n_ans
        idx = torch.arange(length)
        causal = idx[None, :] <= idx[:, None]  # (L, L)
        bi = branch_t[:, :, None]
        bj = branch_t[:, None, :]
        allowed = causal[None] & ((bj == -1) | (bj == bi)) & (bi != -2)
        allowed |= torch.eye(length, dtype=torch.bool)[None]  # padding rows see themselves
        mask = torch.zeros((bsz, 1, length, length), dtype=dtype)
        mask.masked_fill_(~allowed[:, None], torch.finfo(dtype).min)
        pixels = torch.stack([self.pixels(ex) for ex in examples]).to(dtype)
        reading = [(r, p, t) for r, ex in enumerate(examples)
                   for p, t in self.reading_positions(ex)]
        batch = Batch(input_ids, position_ids, mask, pixels,
                      torch.tensor(pred_pos, dtype=torch.long).reshape(-1, 2),
                      torch.tensor(targets, dtype=torch.long),
                      torch.tensor(answer_of, dtype=torch.long), answers)
        if all(ex.dense is not None for ex in examples):
            batch.dense_targets = torch.stack([ex.dense for ex in examples])
        if reading:
            batch.reading_pos = torch.tensor([(r, p) for r, p, _ in reading], dtype=torch.long)
            batch.reading_targets = torch.tensor([t for _, _, t in reading], dtype=torch.long)
        return batch


def answer_loss(model, batch: Batch, reading_weight: float = 0.0, dense_heads=None,
                dense_weight: float = 0.0, stats: dict | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy over answer tokens, and per-answer exact-match (teacher forced).

    Logits are computed only at the positions that predict a target token (the LM head on
    a few hundred rows instead of every position). ``reading_weight`` > 0 adds the
    mark-reading loss: at the image token of the patch where a number is drawn, the LM must
    predict that number. It gives a model trained from scratch a direct signal for reading
    the marks, which the grounding answer alone provides only through attention.
    ``dense_heads`` (a ``dense.DenseHeads``) with ``dense_weight`` > 0 adds the per-patch
    ground-truth loss on the projected image features; its accuracies go to ``stats``.
    """
    captured: list[torch.Tensor] = []
    hook = None
    use_dense = dense_heads is not None and dense_weight > 0 and batch.dense_targets is not None
    if use_dense:
        hook = model.model.multi_modal_projector.register_forward_hook(
            lambda _m, _i, o: captured.append(o))
    try:
        out = model.model(input_ids=batch.input_ids, pixel_values=batch.pixel_values,
                          attention_mask=batch.attention_mask, position_ids=batch.position_ids,
                          use_cache=False)
    finally:
        if hook is not None:
            hook.remove()
    hidden = out.last_hidden_state[batch.pred_pos[:, 0], batch.pred_pos[:, 1]]
    logits = model.lm_head(hidden).float()
    loss = torch.nn.functional.cross_entropy(logits, batch.targets)
    if reading_weight > 0 and batch.reading_pos is not None:
        r_hidden = out.last_hidden_state[batch.reading_pos[:, 0], batch.reading_pos[:, 1]]
        r_logits = model.lm_head(r_hidden).float()
        loss = loss + reading_weight * torch.nn.functional.cross_entropy(
            r_logits, batch.reading_targets)
    if stats is not None:
        stats['answer_loss'] = float(loss.detach())  # before any auxiliary term
    if use_dense and captured:
        feats = captured[0].reshape(batch.dense_targets.shape[0], -1, captured[0].shape[-1])
        d_loss, acc = dense_heads.loss(feats, batch.dense_targets.to(feats.device))
        loss = loss + dense_weight * d_loss
        if stats is not None:
            stats.update({f'dense_{k}': v for k, v in acc.items()})
            stats['dense_loss'] = float(d_loss.detach())
    hit = (logits.argmax(-1) == batch.targets).float()
    per_answer = torch.ones(batch.num_answers)
    per_answer = per_answer.scatter_reduce(0, batch.answer_of, hit, reduce='amin')
    return loss, per_answer


def branch_logprobs(model, packer: Packer, example: Example) -> list[float]:
    """log P(target segments of each branch | prefix, branch context), one forward pass.

    Used to compare fixed answers (e.g. " yes" vs " no") exactly as training scores them.
    """
    batch = packer.collate([example])
    with torch.no_grad():
        out = model.model(input_ids=batch.input_ids, pixel_values=batch.pixel_values,
                          attention_mask=batch.attention_mask,
                          position_ids=batch.position_ids, use_cache=False)
        hidden = out.last_hidden_state[batch.pred_pos[:, 0], batch.pred_pos[:, 1]]
        logp = torch.log_softmax(model.lm_head(hidden).float(), dim=-1)
        tok = logp.gather(1, batch.targets[:, None])[:, 0]
    totals = torch.zeros(batch.num_answers).index_add_(0, batch.answer_of, tok)
    return [float(v) for v in totals]
