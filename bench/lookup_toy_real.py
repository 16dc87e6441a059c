"""The lookup toy's model on the oracle's real frame tokens: is it the frames or the prompt?

The toy (``bench/lookup_toy.py``: a 3 x 128 Llama from scratch, a linear token map, a 41-way
head, the answer read at the category word) learns the colour-and-category lookup on random
scenes; the oracle (``bench/oracle_lm.py``: the same LM inside the LLaVA prompt) did not. This
runs the toy's model on the oracle's own tokens (the 8 x 8 per-patch mark, category and
colour one-hots of real test-bed frames, label features on), one colour query per sample,
keyed by the target's own (colour, category) as two word tokens, the marks renumbered at every
draw. Learning here (docs/training.md, "Towards 85%", row 43) puts the oracle's stall in the
prompt around the query, not in the frames.

    python bench/oracle_lm.py --grid 8 --label-features --steps 0 ...   # makes the cache
    python bench/lookup_toy_real.py --cache runs/oracle/frames_1500_g8_lf.pt --out F.json
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from lookup_toy import NMARK, renumbering, write_curve

from spatial_llava_ros.training.dense import HEAD_NAMES, HEADS, IGNORE

ROWS = ('mark', 'category', 'color')


def colour_queries(frames: list) -> tuple[torch.Tensor, torch.Tensor]:
    """(F, 3, P) class ids and (Q, 4) rows of (frame, colour, category, target mark): each
    mark's key is the most common colour and category over its patches."""
    rows = [HEAD_NAMES.index(h) for h in ROWS]
    tokens, queries = [], []
    for f in frames:
        d = torch.from_numpy(f.dense.marked.astype('int64'))
        keys = {}
        for m in set(d[rows[0]].tolist()) - {0, IGNORE}:
            on = d[rows[0]] == m
            keys[m] = (int(d[rows[2]][on].mode().values), int(d[rows[1]][on].mode().values))
        queries += [(len(tokens), *keys[m]) + (m,) for _, m, rel in f.queries
                    if rel == 'color' and m in keys]
        tokens.append(d[rows])
    return torch.stack(tokens), torch.tensor(queries)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--cache', type=Path, default=Path('runs/oracle/frames_1500_g8_lf.pt'))
    ap.add_argument('--steps', type=int, default=1200)
    ap.add_argument('--batch', type=int, default=32)
    ap.add_argument('--lr', type=float, default=1.5e-3)
    ap.add_argument('--no-permute', action='store_true', help="keep the engine's numbers")
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--out', type=Path, default=None)
    args = ap.parse_args()
    from transformers import LlamaConfig, LlamaModel

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    train, val = torch.load(args.cache, weights_only=False)
    xt, qt = colour_queries(train)
    xv, qv = colour_queries(val)
    print(f'{len(qt)} training / {len(qv)} validation colour queries', flush=True)
    nm, nc, nk = (HEADS[h] for h in ROWS)
    assert nm == NMARK  # the toy's renumbering covers the same 40 ids
    d = 128
    lm = LlamaModel(LlamaConfig(vocab_size=nk + nc, hidden_size=d, intermediate_size=2 * d,
                                num_hidden_layers=3, num_attention_heads=4,
                                num_key_value_heads=4, max_position_embeddings=1024))
    feat = torch.nn.Linear(nm + nc + nk, d)
    head = torch.nn.Linear(d, nm)
    params = [*lm.parameters(), *feat.parameters(), *head.parameters()]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)

    def forward(x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        parts = [torch.nn.functional.one_hot(x[:, j].clamp(min=0), n).float()
                 * (x[:, j] != IGNORE)[..., None] for j, n in enumerate((nm, nc, nk))]
        words = lm.embed_tokens(torch.stack([q[:, 1], nk + q[:, 2]], 1))
        seq = torch.cat([feat(torch.cat(parts, -1)), words], 1)
        return head(lm(inputs_embeds=seq).last_hidden_state[:, -1])

    gen = torch.Generator().manual_seed(0)
    log, t0 = [], time.time()
    for step in range(1, args.steps + 1):
        for g in opt.param_groups:
            g['lr'] = args.lr * min(1.0, step / 100)
        q = qt[torch.randint(0, len(qt), (args.batch,), generator=gen)]
        x, y = xt[q[:, 0]].clone(), q[:, 3].clone()
        if not args.no_permute:  # new numbers for every draw: no answer to remember
            perm = renumbering(args.batch, gen)
            m = x[:, 0]
            x[:, 0] = torch.where((m > 0) & (m != IGNORE),
                                  torch.gather(perm, 1, m.clamp(min=0)), m)
            y = perm[torch.arange(args.batch), y]
        loss = torch.nn.functional.cross_entropy(forward(x, q), y)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if step % 100 == 0:
            with torch.no_grad():
                acc = float((forward(xv[qv[:, 0]], qv).argmax(-1) == qv[:, 3]).float().mean())
            row = {'step': step, 'loss': round(loss.item(), 3), 'val_acc': round(acc, 3),
                   'wall_s': round(time.time() - t0)}
            print(row, flush=True)
            log.append(row)
    if args.out:
        write_curve(args.out, args, log)


if __name__ == '__main__':
    main()
