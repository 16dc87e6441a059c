"""How fast does the language model learn grounding when its image tokens are PERFECT?

A diagnostic for the default-model recipe (docs/training.md, "Towards 85%"). The LM (from
scratch, the shipped shape) reads the test-bed's dense ground truth instead of the ViT: at
every patch the one-hot label / mark / category / colour / ranks / distance / column
(training/dense.py) through one learned linear map replaces the projector's output. The
validation top-1 curve is then a ceiling for the LM stage with perfect vision, which tells
"the ViT is the bottleneck" from "the LM stage is the bottleneck".

    python bench/oracle_lm.py --steps 400 --frames 1500 --lr 1.5e-3 --tag all
    python bench/oracle_lm.py --steps 400 --queries-per-frame 40 --tag qpf40
    python bench/oracle_lm.py --steps 200 --attention-weight 1.0 --tag attn

``--attention-weight`` adds attention supervision: the last LM layer's attention from each
answer's first position is pushed onto the target mark's patches (-log of its mass; eager
attention, about 3x slower). Writes runs/oracle/TAG.json (the logged curve).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import multiprocessing as mp
import random
import time
from collections import Counter
from functools import partial
from pathlib import Path

import numpy as np
import torch

from spatial_llava_ros.model.loading import load_model
from spatial_llava_ros.model.prompt import PromptTemplate
from spatial_llava_ros.model.tiny import make_tiny_model
from spatial_llava_ros.scene.catalog import CATEGORIES
from spatial_llava_ros.scene.expressions import RELATIONS
from spatial_llava_ros.training.dense import HEAD_NAMES, HEADS, IGNORE
from spatial_llava_ros.training.frames_cache import load_frames
from spatial_llava_ros.training.packing import Packer, answer_loss, grounding_example
from spatial_llava_ros.training.renumber import renumber_dense, shuffled_ids
from spatial_llava_ros.training.synthetic import SomSettings, training_frame
from spatial_llava_ros.training.synthetic import keep_relations as only_relations
from spatial_llava_ros.training.trainer import vocabulary_texts


def _frames(n_train: int, out: Path, grid: int = 16, label_features: bool = False):
    cache = out / (f'frames_{n_train}{"" if grid == 16 else f"_g{grid}"}'
                   f'{"_lf" if label_features else ""}.pt')
    if cache.is_file():
        return torch.load(cache, weights_only=False)
    settings = SomSettings(320, 240, 40.0, 'number', 'depth')
    job = partial(training_frame, settings=settings, max_expressions=40, grid=grid, dense=True,
                  free=False, label_features=label_features)
    with mp.get_context('fork').Pool(2) as pool:
        train = [f for f in pool.imap(job, range(100000, 100000 + n_train), chunksize=8)
                 if f.queries]
        val = [f for f in pool.imap(job, range(90000, 90040), chunksize=8) if f.queries]
    torch.save((train, val), cache)
    return train, val


def keep_relations(frames: list, relations: str | None) -> list:
    """Only the queries of these relations (a comma list; None keeps all), on the frames that
    still have one."""
    if not relations:
        return frames
    only_relations(frames, relations.split(','))
    return [f for f in frames if f.queries]


def label_only(frames: list) -> None:
    """Blank every patch but the marks' labels: each marked object is then a few tokens,
    whatever its size (a big table no longer outweighs a small mug in an attention's sum)."""
    lab = HEAD_NAMES.index('label')
    for f in frames:
        d = f.dense.marked
        d[:, d[lab] == 0] = IGNORE


def tiny_lm(out: Path, template: PromptTemplate, grid: int, text_layers: int = 3,
            whole_numbers: bool = False):
    """The oracle's model: the shipped LM shape (text_layers x 128) from scratch, a 1-layer
    dummy vision tower (the oracle replaces its tokens) at GRID x GRID patches; made once."""
    base = out / (f'base_{text_layers}{"_wn" if whole_numbers else ""}'
                  f'{"" if grid == 16 else f"_g{grid}"}')
    make_tiny_model(base, image_size=192, patch_size=192 // grid, vision_hidden=16,
                    vision_layers=1, text_hidden=128, text_layers=text_layers, heads=4,
                    vision_feature_layer=-1, prompt_texts=vocabulary_texts(template),
                    whole_numbers=whole_numbers)
    return load_model(base, dtype='float32')


def one_hot_tokens(t: torch.Tensor, sel: list[int]) -> torch.Tensor:
    """(..., heads, P) dense class ids -> (..., P, dim): the selected heads' one-hots side by
    side, zero where a head has no target."""
    parts = []
    for i in sel:
        x = t[..., i, :].long()
        parts.append(torch.nn.functional.one_hot(x.clamp(min=0), HEADS[HEAD_NAMES[i]])
                     .float() * (x != IGNORE)[..., None])
    return torch.cat(parts, -1)


def lr_at(lr: float, step: int, steps: int) -> float:
    """100 warm-up steps, then a cosine down to 0.1 of ``lr`` at the last step."""
    cosine = 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / steps))
    return lr * min(1.0, step / 100) * cosine


def per_relation(hit: torch.Tensor, rels: list[str]) -> dict[str, float]:
    """Mean of the per-answer hits for each relation."""
    return {r: round(float(hit[[k for k, x in enumerate(rels) if x == r]].mean()), 2)
            for r in sorted(set(rels))}


def _share_code(oracle: torch.nn.Linear, sel: list[int], model, tokenizer) -> None:
    """Column k of the map := the input embedding of class k's word ("lamp", "red",
    the digits of mark 12), so query words and image tokens share one code from step 0."""
    from spatial_llava_ros.scene.catalog import COLORS

    emb = model.get_input_embeddings().weight
    words = {'category': [None] + [c.replace('_', ' ') for c in CATEGORIES],
             'color': [None] + list(COLORS),
             'mark': [None] + [str(m) for m in range(1, HEADS['mark'])],
             'label': [None] + [str(m) for m in range(1, HEADS['label'])]}
    col = 0
    with torch.no_grad():
        for i in sel:
            name = HEAD_NAMES[i]
            for k in range(HEADS[name]):
                word = words.get(name, [None] * HEADS[name])[k]
                if word is not None:
                    ids = tokenizer(' ' + word, add_special_tokens=False)['input_ids']
                    oracle.weight[:, col + k] = emb[ids].sum(0)
            col += HEADS[name]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--steps', type=int, default=400)
    ap.add_argument('--frames', type=int, default=1500)
    ap.add_argument('--lr', type=float, default=1.5e-3)
    ap.add_argument('--text-layers', type=int, default=3)
    ap.add_argument('--queries-per-frame', type=int, default=12)
    ap.add_argument('--heads', default='all', help='dense heads the tokens carry, comma list')
    ap.add_argument('--attention-weight', type=float, default=0.0)
    ap.add_argument('--curriculum', type=int, default=0,
                    help='first N steps: only "the CATEGORY" queries of unique categories '
                         '(N >= --steps: validate on those too)')
    ap.add_argument('--shared-code', action='store_true',
                    help='start the token map at the word embeddings of each class: category '
                         'and colour words, the digits of the mark number')
    ap.add_argument('--query-aux', type=float, default=0.0,
                    help='weight of heads that read the target category, colour and relation '
                         'off the answer position after LM layer --aux-layer (the first hop)')
    ap.add_argument('--aux-layer', type=int, default=1)
    ap.add_argument('--pointer', type=float, default=0.0,
                    help='weight of a pointer loss: head 0 of LM layer --pointer-layer, from '
                         "each answer's first position, attends onto the target's patches "
                         "(computed from that layer's q/k, no eager attention)")
    ap.add_argument('--pointer-layer', type=int, default=1)
    ap.add_argument('--whole-numbers', action='store_true',
                    help='one token per number ("12") instead of one per digit')
    ap.add_argument('--train-cache', type=Path, default=None,
                    help="a trainer's frames.pt (e.g. stage 1's 6,000 frames) instead of "
                         '--frames freshly rendered ones')
    ap.add_argument('--grid', type=int, default=16,
                    help='image tokens per side (16: the shipped 256 tokens; 8: 64 tokens)')
    ap.add_argument('--short-query', type=int, default=0,
                    help='first N steps: the query segment is " which mark is QUERY", so the '
                         "answer is predicted at the query's own last word, then the real "
                         'template (a template curriculum)')
    ap.add_argument('--relations', default=None,
                    help='train and validate on these relations only (comma list, e.g. color)')
    ap.add_argument('--frames-per-step', type=int, default=8,
                    help='distinct frames in each step (the toy needed many distinct scenes '
                         'per step to leave its plateau)')
    ap.add_argument('--label-features', action='store_true',
                    help="a label's patches carry its object's category, colour and ranks too "
                         '(no marked object vanishes from the tokens)')
    ap.add_argument('--label-only', action='store_true',
                    help='tokens only at label patches (with --label-features: a few tokens '
                         'per marked object, the rest blank)')
    ap.add_argument('--permute-marks', action='store_true',
                    help="each training presentation shuffles the frame's own mark numbers "
                         '(training/renumber.py): more distinct lookups from the same frames')
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--out', type=Path, default=Path('runs/oracle'))
    ap.add_argument('--tag', default='oracle')
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    args.out.mkdir(parents=True, exist_ok=True)
    # with --train-cache only the validation frames come from _frames (no training frames made)
    train, val = _frames(0 if args.train_cache else args.frames, args.out, args.grid,
                         args.label_features)
    if args.train_cache:
        train = [f for f in load_frames(Path(args.train_cache))['frames']
                 if f.queries and f.dense is not None]
    train, val = keep_relations(train, args.relations), keep_relations(val, args.relations)
    if args.label_only:
        label_only(train + val)
    template = PromptTemplate.load()
    loaded = tiny_lm(args.out, template, args.grid, args.text_layers, args.whole_numbers)
    model = loaded.model.train()
    if args.attention_weight:
        model.set_attn_implementation('eager')
    for p in model.model.vision_tower.parameters():
        p.requires_grad_(False)
    packer = Packer(loaded.tokenizer, loaded.image_token_id, model.config.image_seq_length,
                    loaded.processor.image_processor)
    used = list(HEAD_NAMES) if args.heads == 'all' else args.heads.split(',')
    sel = [HEAD_NAMES.index(h) for h in used]
    oracle = torch.nn.Linear(sum(HEADS[HEAD_NAMES[i]] for i in sel), 128)
    current: dict[str, torch.Tensor] = {}
    if args.shared_code:
        _share_code(oracle, sel, model, loaded.tokenizer)

    model.model.multi_modal_projector.register_forward_hook(
        lambda _m, _i, o: oracle(current['x']).reshape(o.shape))
    dummy = torch.zeros(3, 192, 192)

    cat_row = HEAD_NAMES.index('category')
    names = ['background'] + [c.replace('_', ' ') for c in CATEGORIES]

    def unique_category_queries(f) -> list[tuple[str, int, str]]:
        """'the lamp' -> its mark, for each category that only one marked object has."""
        marks, cats = f.dense.marked[HEAD_NAMES.index('mark')], f.dense.marked[cat_row]
        cat_of = {}
        for m in f.mark_ids:
            c = cats[(marks == m) & (cats > 0)]
            if len(c):
                cat_of[m] = int(np.bincount(c).argmax())
        counts = Counter(cat_of.values())
        return [(f'the {names[c]}', m, 'unique') for m, c in cat_of.items() if counts[c] == 1]

    color_row = HEAD_NAMES.index('color')
    rel_index = {r: i for i, r in enumerate(RELATIONS)}
    rel_index['unique'] = len(RELATIONS)

    def aux_targets(f, m, rel) -> tuple[int, int, int]:
        on = f.dense.marked[HEAD_NAMES.index('mark')] == m
        cats, cols = f.dense.marked[cat_row][on], f.dense.marked[color_row][on]
        cats, cols = cats[cats > 0], cols[cols > 0]
        return (int(np.bincount(cats).argmax()) if len(cats) else IGNORE,
                int(np.bincount(cols).argmax()) if len(cols) else IGNORE, rel_index[rel])

    aux_heads = torch.nn.ModuleList([torch.nn.Linear(128, HEADS['category']),
                                     torch.nn.Linear(128, HEADS['color']),
                                     torch.nn.Linear(128, len(RELATIONS) + 1)])

    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    attn_in: dict = {}

    def grab(_mod, a, kw):
        attn_in['h'] = a[0] if a else kw['hidden_states']
        attn_in['pe'] = kw['position_embeddings'] if 'position_embeddings' in kw else a[1]

    pointed = model.model.language_model.layers[args.pointer_layer].self_attn
    if args.pointer:
        pointed.register_forward_pre_hook(grab, with_kwargs=True)

    def pointer_loss(batch, exs, rows) -> torch.Tensor:
        h, (cos, sin) = attn_in['h'], attn_in['pe']
        hd = pointed.head_dim
        r, p = batch.pred_pos[rows, 0], batch.pred_pos[rows, 1]
        q = pointed.q_proj(h[r, p]).view(len(rows), -1, hd)[:, :1]  # head 0: (K, 1, hd)
        q, _ = apply_rotary_pos_emb(q, q, cos[r, p], sin[r, p], unsqueeze_dim=1)
        img = slice(img_start, img_start + n_img)
        k = pointed.k_proj(h[:, img]).view(h.shape[0], n_img, -1, hd)[:, None, :, 0]
        _, k = apply_rotary_pos_emb(k, k, cos[:, img], sin[:, img], unsqueeze_dim=1)
        k = k[:, 0]  # head 0: (B, N, hd)
        scores = (q[:, 0, None, :] * k[r]).sum(-1) * pointed.scaling  # (K, N)
        marks = torch.tensor([m for ex in exs for m in ex.meta['marks']])
        on = batch.dense_targets[r, mark_row] == marks[:, None]
        keep = on.any(-1)
        masked = scores.masked_fill(~on, float('-inf'))
        return (scores.logsumexp(-1) - masked.logsumexp(-1))[keep].mean()

    def forward(batch, **outputs):
        return model.model(input_ids=batch.input_ids, pixel_values=batch.pixel_values,
                           attention_mask=batch.attention_mask, position_ids=batch.position_ids,
                           use_cache=False, **outputs)

    def first_targets(batch) -> dict[int, int]:
        """Answer index -> the index of its first target token in the batch."""
        first: dict[int, int] = {}
        for k, a in enumerate(batch.answer_of.tolist()):
            first.setdefault(a, k)
        return first

    def answer_terms(out, batch):
        """Cross-entropy on the answer tokens and per-answer exact match, as answer_loss."""
        logits = model.lm_head(out.last_hidden_state[batch.pred_pos[:, 0],
                                                     batch.pred_pos[:, 1]]).float()
        loss = torch.nn.functional.cross_entropy(logits, batch.targets)
        hit = (logits.argmax(-1) == batch.targets).float()
        per_answer = torch.ones(batch.num_answers).scatter_reduce(0, batch.answer_of, hit,
                                                                  reduce='amin')
        return loss, per_answer

    def aux_loss(batch, exs):
        out = forward(batch, output_hidden_states=True)
        aux = [t for ex in exs for t in ex.meta['aux']]
        first = first_targets(batch)
        rows = torch.tensor([first[a] for a in range(len(aux))])
        h = out.hidden_states[args.aux_layer][batch.pred_pos[rows, 0], batch.pred_pos[rows, 1]]
        terms = [torch.nn.functional.cross_entropy(head(h), torch.tensor([t[j] for t in aux]),
                                                   ignore_index=IGNORE)
                 for j, head in enumerate(aux_heads)] if args.query_aux else []
        extra = args.query_aux * sum(terms)
        if args.pointer:
            ptr = pointer_loss(batch, exs, rows)
            attn_in['loss'] = round(float(ptr.detach()), 3)
            extra = extra + args.pointer * ptr
        loss, per_answer = answer_terms(out, batch)
        return loss + extra, per_answer

    short = dataclasses.replace(template, query=' which mark is {query}')

    def examples(frames, rng, qpf, easy=False, tmpl=None, permute=False):
        tmpl = tmpl or template
        out = []
        for f in frames:
            pool = (unique_category_queries(f) or f.queries) if easy else f.queries
            qs = pool if len(pool) <= qpf else rng.sample(pool, qpf)
            dense = f.dense.marked
            new = {m: m for m in f.mark_ids}
            if permute:  # the same frame under other numbers: a new lookup for the LM
                new = shuffled_ids(f.mark_ids, rng)
                dense = renumber_dense(dense, new)
            ex = grounding_example(f.image, list(new.values()),
                                   [(t, new[m]) for t, m, _ in qs], tmpl)
            ex.meta['marks'] = [new[m] for _, m, _ in qs]
            ex.meta['aux'] = [aux_targets(f, m, rel) for _, m, rel in qs]
            ex.meta['rels'] = [rel for _, _, rel in qs]
            ex.pixel_values = dummy
            ex.dense = torch.from_numpy(dense)
            out.append(ex)
        return out

    mark_row = HEAD_NAMES.index('mark')
    img_start = packer.prefix_ids(template.frame_text([1])).index(loaded.image_token_id)
    n_img = model.config.image_seq_length

    def supervised_loss(batch, exs):
        out = forward(batch, output_attentions=True)
        att = out.attentions[-1]  # (B, H, L, L)
        marks = [m for ex in exs for m in ex.meta['marks']]
        first = first_targets(batch)
        terms = []
        for a, k in first.items():
            r, p = (int(v) for v in batch.pred_pos[k])
            on = (batch.dense_targets[r, mark_row] == marks[a]).float()
            if on.any():
                mass = (att[r, :, p, img_start:img_start + n_img] * on).sum(-1)
                terms.append(-mass.clamp_min(1e-6).log().mean())
        loss, per_answer = answer_terms(out, batch)
        return loss + args.attention_weight * torch.stack(terms).mean(), per_answer

    params = [p for p in model.parameters() if p.requires_grad] + list(oracle.parameters())
    params += list(aux_heads.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    rng = random.Random(0)

    def evaluate() -> tuple[float, dict[str, float]]:
        model.eval()
        hits, rels = [], []
        with torch.no_grad():
            for i in range(0, len(val), 8):
                exs = examples(val[i:i + 8], random.Random(1), 1000,
                               easy=args.curriculum >= args.steps)
                batch = packer.collate(exs)
                current['x'] = one_hot_tokens(batch.dense_targets, sel)
                hits.append(answer_loss(model, batch)[1])
                rels += [r for ex in exs for r in ex.meta['rels']]
        model.train()
        hit = torch.cat(hits)
        return float(hit.mean()), per_relation(hit, rels)

    t0, log = time.time(), []
    for step in range(1, args.steps + 1):
        for g in opt.param_groups:
            g['lr'] = lr_at(args.lr, step, args.steps)
        exs = examples([train[rng.randrange(len(train))] for _ in range(args.frames_per_step)],
                       rng,
                       args.queries_per_frame, easy=step <= args.curriculum,
                       tmpl=short if step <= args.short_query else template,
                       permute=args.permute_marks)
        batch = packer.collate(exs)
        current['x'] = one_hot_tokens(batch.dense_targets, sel)
        if args.attention_weight:
            loss, per_answer = supervised_loss(batch, exs)
        elif args.query_aux or args.pointer:
            loss, per_answer = aux_loss(batch, exs)
        else:
            loss, per_answer = answer_loss(model, batch)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if step % 100 == 0 or step == args.steps:
            row = {'step': step, 'loss': round(float(loss.detach()), 3),
                   'train_acc': round(float(per_answer.mean()), 3),
                   'wall_s': round(time.time() - t0)}
            if 'loss' in attn_in:
                row['pointer_loss'] = attn_in['loss']
            if step % 200 == 0 or step == args.steps:
                acc, per = evaluate()
                row['val_acc'] = round(acc, 3)
                row['val_per_relation'] = per
            print(args.tag, row, flush=True)
            log.append(row)
    (args.out / f'{args.tag}.json').write_text(json.dumps(log, indent=1) + '\n')


if __name__ == '__main__':
    main()
