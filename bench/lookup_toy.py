"""Why does the from-scratch LM stall on grounding? A toy that isolates the lookup.

A Llama LM (HF ``LlamaModel``, the default model's 3 x 128 shape, from scratch) reads N
one-hot "image tokens" (10 objects, each a category, a colour and a mark, spread over
patches; 40% background) followed by a query: a colour word, a category word, ``--fill``
filler tokens and a final token, like "red mug ? answer with the mark number only .
assistant :". It must name the mark of the object with that colour and category, from the
final position, as the resolver reads the answer. docs/training.md ("Towards 85%") has what
each variant did:

    python bench/lookup_toy.py --fill 8                 # the real template's shape: stalls
    python bench/lookup_toy.py --fill 8 --onehop        # query summed INTO the final token
    python bench/lookup_toy.py --at-word                # answer read at the category word
    python bench/lookup_toy.py --fill 8 --curriculum 300  # --at-word first, then --fill 8
    python bench/lookup_toy.py --fill 8 --query-first   # the query before the image tokens

Trains on fresh random scenes every step (batch 32); every 100 steps prints the accuracy on
512 held-out scenes in the final template (a colour + category pair may name two objects, so
the ceiling is a little under 1) and writes the curve to ``--out`` (JSON) when given.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

NOBJ, NCAT, NCOL, NMARK = 10, 26, 12, 41
FILLER, FINAL = NCAT + NCOL + 1, NCAT + NCOL + 2
EXTRA = 10  # classes of each distractor feature (--extra-features)


def scenes(batch: int, n: int, gen: torch.Generator, extra: int = 0, per: int = 1,
           same: int = 1, marked: int = NOBJ):
    """Image features (B, N, C), query colour/category word ids (B, 2), target mark (B,).
    ``extra`` adds that many random per-object one-hot features (as the oracle's ranks,
    distance and column), which the query never asks about. ``per`` queries share each scene
    (batch // per distinct scenes), as a frame's queries share its image tokens. ``same`` > 1
    gives the target's category to ``same - 1`` more objects, each in another colour, so the
    colour word is needed (the real colour queries exist only then). Only the first ``marked``
    objects carry a mark (the others show their category and colour with mark class 0, as
    an unmarked object in a frame) and only they are targets."""
    k = batch // per

    def rep(t: torch.Tensor) -> torch.Tensor:
        return t.repeat_interleave(per, 0)

    cat = rep(torch.randint(0, NCAT, (k, NOBJ), generator=gen))
    col = rep(torch.randint(0, NCOL, (k, NOBJ), generator=gen))
    mark = rep(torch.argsort(torch.rand(k, NMARK - 1, generator=gen), -1)[:, :NOBJ] + 1)
    mark[:, marked:] = 0
    if same > 1:
        assert per == 1, '--same-category needs --per-scene 1'
        t = torch.randint(0, marked, (batch,), generator=gen)
        b = torch.arange(batch)
        for j in range(same - 1):
            other = (t + 1 + j) % marked
            cat[b, other] = cat[b, t]
            col[b, other] = (col[b, t] + 1 + j) % NCOL
    obj = rep(torch.randint(0, NOBJ, (k, n), generator=gen))
    on = rep(torch.rand(k, n, generator=gen) >= 0.4)
    x = torch.zeros(batch, n, NCAT + NCOL + NMARK + extra * EXTRA)
    rows = torch.arange(batch)[:, None].expand(batch, n)
    feats = [(0, cat), (NCAT, col), (NCAT + NCOL, mark)]
    feats += [(NCAT + NCOL + NMARK + j * EXTRA,
               rep(torch.randint(0, EXTRA, (k, NOBJ), generator=gen))) for j in range(extra)]
    for offset, value in feats:
        x.scatter_(2, (offset + value[rows, obj])[..., None], on[..., None].float())
    if same == 1:
        t = torch.randint(0, marked, (batch,), generator=gen)
        b = torch.arange(batch)
    words = torch.stack([NCAT + col[b, t], cat[b, t]], 1)
    flag = on & (obj == t[:, None])  # patches of the target (for --flag-aux)
    return x, words, mark[b, t], flag


def renumbering(batch: int, gen: torch.Generator) -> torch.Tensor:
    """(batch, NMARK) old -> new mark ids, a fresh permutation of 1..40 per row (0 stays
    0, "no mark")."""
    return torch.cat([torch.zeros(batch, 1, dtype=torch.long),
                      torch.argsort(torch.rand(batch, NMARK - 1, generator=gen), -1) + 1], 1)


def write_curve(out: Path, args: argparse.Namespace, log: list[dict]) -> None:
    """The run's arguments and its curve, as bench/results/lookup_toy/*.json hold them."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({'args': {k: str(v) for k, v in vars(args).items()},
                               'curve': log}, indent=1) + '\n')


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--fill', type=int, default=8, help='filler tokens before the final one')
    ap.add_argument('--layers', type=int, default=3)
    ap.add_argument('--hidden', type=int, default=128)
    ap.add_argument('--image-tokens', type=int, default=64)
    ap.add_argument('--steps', type=int, default=600)
    ap.add_argument('--batch', type=int, default=32)
    ap.add_argument('--lr', type=float, default=1.5e-3)
    ap.add_argument('--onehop', action='store_true',
                    help='the final token is the sum of the colour and category embeddings')
    ap.add_argument('--at-word', action='store_true',
                    help='no filler or final token: the answer is read at the category word')
    ap.add_argument('--aux', type=float, default=0.0,
                    help='weight of heads that read the query colour and category off the '
                         "final position after layer 1 (supervising the 'gather' hop)")
    ap.add_argument('--curriculum', type=int, default=0,
                    help='first N steps as --at-word, then the --fill template')
    ap.add_argument('--extra-features', type=int, default=0,
                    help='random per-object one-hot features the query never asks about')
    ap.add_argument('--query-first', action='store_true',
                    help='the query words come before the image tokens, so every image '
                         'token can see the query (the fill and final tokens stay last)')
    ap.add_argument('--flag-aux', type=float, default=0.0,
                    help='weight of a head that tells, at every image token after layer '
                         "--flag-layer, whether it is the target's (needs --query-first)")
    ap.add_argument('--flag-layer', type=int, default=1)
    ap.add_argument('--pointer', type=float, default=0.0,
                    help="weight of a loss that puts the last layer's attention (all heads) "
                         "from the final position onto the target's patches")
    ap.add_argument('--zero-init', action='store_true',
                    help='start every layer as the identity: o_proj and down_proj at zero')
    ap.add_argument('--per-scene', type=int, default=1,
                    help='queries that share one scene in a batch (the oracle: 12-40 per frame)')
    ap.add_argument('--shared-code', action='store_true',
                    help="the image-token map's colour and category columns start at those "
                         "words' embeddings (one code for a word and the patch it names)")
    ap.add_argument('--qk-tie', type=float, default=0.0,
                    help='start each layer with k_proj = q_proj, drawn at this std, on the '
                         'slowest-rotating half of every head (RoPE keeps them comparable '
                         'across positions): a token attends to tokens like itself from step 0')
    ap.add_argument('--rope-theta', type=float, default=10000.0)
    ap.add_argument('--feature-scale', type=float, default=1.0,
                    help="scale of the image-token map's initial weights")
    ap.add_argument('--same-category', type=int, default=1,
                    help="objects sharing the target's category, each in its own colour "
                         '(2-3: a conjunction, as the real colour queries)')
    ap.add_argument('--pool', type=int, default=0,
                    help='draw from a fixed pool of this many scenes instead of fresh ones '
                         '(the real trainer has a few thousand frames)')
    ap.add_argument('--permute', action='store_true',
                    help='with --pool: every draw renumbers the marks at random')
    ap.add_argument('--marked', default='',
                    help='START:STEPS: a curriculum on the number of marked objects, from '
                         'START to all 10 over STEPS steps (the others stay unmarked '
                         'distractors; the held-out scenes always mark all 10)')
    ap.add_argument('--dense-answer', type=float, default=0.0,
                    help='weight of the answer loss at every position from the category '
                         'word to the one before the final token (the lookup at the word '
                         'and each filler, learned alongside the final answer)')
    ap.add_argument('--window', type=int, default=0,
                    help='the first --window-layers layers attend only to the last W tokens '
                         '(a Qwen2 LM with sliding-window layers; 0: the Llama, full '
                         'attention everywhere): the answer position gathers the query')
    ap.add_argument('--window-layers', type=int, default=1)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--out', type=Path, default=None)
    args = ap.parse_args()
    from transformers import LlamaConfig, LlamaModel, Qwen2Config, Qwen2Model

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    d = args.hidden
    shape = dict(vocab_size=FINAL + 1, hidden_size=d, intermediate_size=2 * d,
                 num_hidden_layers=args.layers, num_attention_heads=4, num_key_value_heads=4,
                 max_position_embeddings=1024, rope_theta=args.rope_theta)
    if args.window:
        kinds = ['sliding_attention' if i < args.window_layers else 'full_attention'
                 for i in range(args.layers)]
        lm = Qwen2Model(Qwen2Config(**shape, layer_types=kinds, sliding_window=args.window,
                                    use_sliding_window=True))
    else:
        lm = LlamaModel(LlamaConfig(**shape))
    if args.pointer:
        lm.set_attn_implementation('eager')
    if args.zero_init:
        with torch.no_grad():
            for layer in lm.layers:
                layer.self_attn.o_proj.weight.zero_()
                layer.mlp.down_proj.weight.zero_()
    feat = torch.nn.Linear(NCAT + NCOL + NMARK + args.extra_features * EXTRA, d)
    with torch.no_grad():
        feat.weight.mul_(args.feature_scale)
        if args.shared_code:
            words = lm.embed_tokens.weight
            feat.weight[:, :NCAT + NCOL] = words[:NCAT + NCOL].T
        if args.qk_tie:
            for layer in lm.layers:
                att = layer.self_attn
                hd = att.head_dim
                w = torch.randn_like(att.q_proj.weight) * args.qk_tie
                w = w.view(-1, hd, w.shape[-1])
                w[:, :hd // 4] = 0  # RoPE pairs dim i with i + hd/2; keep the slow pairs
                w[:, hd // 2:hd // 2 + hd // 4] = 0
                att.q_proj.weight.copy_(w.view_as(att.q_proj.weight))
                att.k_proj.weight.copy_(w.view_as(att.k_proj.weight))
    head = torch.nn.Linear(d, NMARK)
    aux = torch.nn.ModuleList([torch.nn.Linear(d, NCOL), torch.nn.Linear(d, NCAT)])
    flag_head = torch.nn.Linear(d, 1)
    params = [*lm.parameters(), *feat.parameters(), *head.parameters(), *aux.parameters(),
              *flag_head.parameters()]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    final_mode = 'at_word' if args.at_word else 'onehop' if args.onehop else 'fill'

    def forward(x, words, mode):
        emb = lm.embed_tokens
        if args.query_first:
            tail = torch.tensor([FILLER] * args.fill + [FINAL]).expand(len(words), -1)
            seq = torch.cat([emb(words), feat(x), emb(tail)], 1)
        elif mode == 'at_word':
            seq = torch.cat([feat(x), emb(words)], 1)
        elif mode == 'onehop':
            seq = torch.cat([feat(x), emb(words).sum(1, keepdim=True)], 1)
        else:
            tail = torch.tensor([FILLER] * args.fill + [FINAL]).expand(len(words), -1)
            seq = torch.cat([feat(x), emb(torch.cat([words, tail], 1))], 1)
        out = lm(inputs_embeds=seq, output_hidden_states=True,
                 output_attentions=bool(args.pointer))
        return out, head(out.last_hidden_state[:, -1])

    def dense_answer_loss(out, y):
        """The answer's loss at the category word (image first) and every filler."""
        start = args.fill + (1 if args.query_first else 2)  # (category word +) fillers
        h = out.last_hidden_state[:, -start:-1]
        logits = head(h)
        return torch.nn.functional.cross_entropy(
            logits.reshape(-1, NMARK), y.repeat_interleave(logits.shape[1]))

    held_out = scenes(512, args.image_tokens, torch.Generator().manual_seed(10_000 + args.seed),
                      args.extra_features, same=args.same_category)
    pool = (scenes(args.pool, args.image_tokens, gen, args.extra_features, 1,
                   args.same_category) if args.pool else None)

    def from_pool():
        """A batch drawn from the fixed pool; with --permute each draw renumbers the marks."""
        idx = torch.randint(0, args.pool, (args.batch,), generator=gen)
        x, words, y, flag = (t[idx] for t in pool)
        if args.permute:
            b = torch.arange(args.batch)
            p = renumbering(args.batch, gen)
            lo = NCAT + NCOL
            part = torch.zeros_like(x[..., lo:lo + NMARK])
            part.scatter_(2, p[:, None, :].expand(-1, x.shape[1], -1), x[..., lo:lo + NMARK])
            x = torch.cat([x[..., :lo], part, x[..., lo + NMARK:]], -1)
            y = p[b, y]
        return x, words, y, flag

    log, t0 = [], time.time()
    for step in range(1, args.steps + 1):
        for g in opt.param_groups:
            g['lr'] = args.lr * min(1.0, step / 100)
        marked = NOBJ
        if args.marked:
            start, span = (int(v) for v in args.marked.split(':'))
            marked = min(NOBJ, round(start + (NOBJ - start) * step / span))
        x, words, y, flag = (from_pool() if pool else
                             scenes(args.batch, args.image_tokens, gen, args.extra_features,
                                    args.per_scene, args.same_category, marked))
        out, logits = forward(x, words, 'at_word' if step <= args.curriculum else final_mode)
        loss = torch.nn.functional.cross_entropy(logits, y)
        if args.dense_answer and final_mode == 'fill' and step > args.curriculum:
            loss = loss + args.dense_answer * dense_answer_loss(out, y)
        if args.aux:
            h1 = out.hidden_states[1][:, -1]
            targets = (words[:, 0] - NCAT, words[:, 1])  # colour class, category class
            loss = loss + args.aux * sum(torch.nn.functional.cross_entropy(a(h1), t)
                                         for a, t in zip(aux, targets))
        if args.pointer:
            start = 2 if args.query_first else 0
            att = out.attentions[-1][:, :, -1, start:start + args.image_tokens]  # (B, H, N)
            mass = (att * flag[:, None].float()).sum(-1).clamp_min(1e-6)
            loss = loss - args.pointer * mass.log().mean()
        if args.flag_aux:
            h = out.hidden_states[args.flag_layer][:, 2:2 + args.image_tokens]
            logit = flag_head(h).squeeze(-1)
            pos = flag.float()
            bce = torch.nn.functional.binary_cross_entropy_with_logits(logit, pos,
                                                                       reduction='none')
            # balanced: the target's patches weigh as much as all the others
            balanced = ((bce * pos).sum() / pos.sum().clamp(min=1)
                        + (bce * (1 - pos)).sum() / (1 - pos).sum().clamp(min=1)) / 2
            loss = loss + args.flag_aux * balanced
            flag_loss = float(balanced.detach())
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if step % 100 == 0:
            with torch.no_grad():
                _, ev = forward(held_out[0], held_out[1], final_mode)
            row = {'step': step, 'marked': marked, 'loss': round(loss.item(), 3),
                   'held_out_acc': round(float((ev.argmax(-1) == held_out[2]).float().mean()),
                                         3),
                   'wall_s': round(time.time() - t0)}
            if args.flag_aux:
                row['flag_loss'] = round(flag_loss, 3)
            print(row, flush=True)
            log.append(row)
    if args.out:
        write_curve(args.out, args, log)


if __name__ == '__main__':
    main()
