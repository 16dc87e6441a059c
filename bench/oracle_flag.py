"""Does the LM learn grounding when image tokens can see the query? Oracle tokens, 3 layouts.

A follow-up to bench/oracle_lm.py (docs/training.md, "Towards 85%"). There the image comes
first, so no image token knows the query, and the answer position must gather the query and
look it up among 256 tokens at once: it stalls. The lookup toy (bench/lookup_toy.py
``--query-first --flag-aux``) learned as soon as the query came *before* the image tokens and
each image token was taught whether it is part of the target (a dense, per-patch signal).
This script measures that on the real task, with the oracle's perfect image tokens (the
test-bed's dense ground truth through one linear map) and the shipped LM shape (3 x 128):

    --layout image_first   system USER: <image> marks. Which mark is Q? Answer ... ASSISTANT:
    --layout query_first   system USER: Which mark is Q? <image> marks. Answer ... ASSISTANT:
    --layout double        system USER: <image> marks. Which mark is Q? <image> Answer ...
                           (the frame once, cacheable per frame, then the same image again
                           after the query: the second copy sees the query and all of the
                           first copy)

``--flag-aux W`` adds a head on the last image copy's tokens after LM layer ``--flag-layer``
that tells whether the patch is the target's (balanced binary cross-entropy, weight W).
``--bare`` drops the system prompt, the mark list and the instruction (BOS, the image, the
query words, the answer: the lookup toy's shape on the real task); ``--relations color``
keeps some query kinds only. One sequence per query; teacher-forced exact match of
" MARK</s>" on the validation seeds 90000:90040, as oracle_lm.py. Writes runs/oracle/TAG.json.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path
from types import SimpleNamespace

import torch

# the sibling script: bench/ is on sys.path when this file runs as a script
from oracle_lm import keep_relations, label_only, lr_at, one_hot_tokens, per_relation, tiny_lm

from spatial_llava_ros.model.prompt import PromptTemplate
from spatial_llava_ros.training.dense import HEAD_NAMES, HEADS
from spatial_llava_ros.training.renumber import renumber_dense, shuffled_ids

IMG = -1  # placeholder id for an image token in a built sequence


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--layout', choices=['image_first', 'query_first', 'double', 'no_list',
                                         'bare_head', 'bare_list', 'short_tail'],
                    default='query_first')
    ap.add_argument('--flag-aux', type=float, default=0.0)
    ap.add_argument('--flag-layer', type=int, default=1)
    ap.add_argument('--steps', type=int, default=400)
    ap.add_argument('--lr', type=float, default=1.5e-3)
    ap.add_argument('--frames-per-step', type=int, default=8)
    ap.add_argument('--queries-per-frame', type=int, default=12)
    ap.add_argument('--grid', type=int, default=8, help='image tokens per side')
    ap.add_argument('--frames', type=Path, default=None,
                    help="frames cache: oracle_lm.py's (train, val) tuple; default "
                         'runs/oracle/frames_1500[_gG].pt')
    ap.add_argument('--bare', action='store_true',
                    help='no system prompt, mark list or instruction: BOS, the image, the query '
                         "words, the answer (the lookup toy's shape on the real task)")
    ap.add_argument('--relations', default=None, help='only these relations (comma list)')
    ap.add_argument('--whole-numbers', action='store_true',
                    help='one token per number instead of one per digit')
    ap.add_argument('--heads', default='all', help='dense heads the tokens carry, comma list')
    ap.add_argument('--label-only', action='store_true',
                    help="tokens only at the marks' label patches (oracle_lm.py --label-only; "
                         'give --frames a --label-features cache)')
    ap.add_argument('--permute-marks', action='store_true',
                    help="each training presentation shuffles the frame's own mark numbers "
                         '(training/renumber.py): the answer cannot come from the numbering')
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--out', type=Path, default=Path('runs/oracle'))
    ap.add_argument('--tag', default='flag')
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cache = args.frames or args.out / ('frames_1500.pt' if args.grid == 16
                                       else f'frames_1500_g{args.grid}.pt')
    train, val = (keep_relations(frames, args.relations)
                  for frames in torch.load(cache, weights_only=False))
    train = [f for f in train if f.queries and f.dense is not None]
    val = [f for f in val if f.queries and f.dense is not None]
    if args.label_only:
        label_only(train + val)
    template = PromptTemplate.load()
    loaded = tiny_lm(args.out, template, args.grid, whole_numbers=args.whole_numbers)
    tok = loaded.tokenizer
    lm = loaded.model.model.language_model.train()
    lm_head = loaded.model.lm_head
    n_img = args.grid ** 2
    sel = [HEAD_NAMES.index(h) for h in
           (HEAD_NAMES if args.heads == 'all' else args.heads.split(','))]
    oracle = torch.nn.Linear(sum(HEADS[HEAD_NAMES[i]] for i in sel), 128)
    flag_head = torch.nn.Linear(128, 1)
    mark_row = HEAD_NAMES.index('mark')

    def enc(text: str) -> list[int]:
        return tok(text, add_special_tokens=False)['input_ids']

    def build(f, query: str, mark: int) -> tuple[list[int], list[int]]:
        marks = template.mark_separator.join(str(m) for m in f.mark_ids)
        frame = f'\nThe objects in the image are labelled with numeric marks: {marks}.'
        ask = f' Which mark is {query}?'
        tail = ' Answer with the mark number only. ASSISTANT:'
        head = [tok.bos_token_id] + enc(f'{template.system} USER: ')
        img = [IMG] * n_img
        if args.bare:
            ids = [tok.bos_token_id] + [IMG] * n_img + enc(f' {query}')
        elif args.layout == 'no_list':  # the template without the mark list
            ids = head + img + enc(ask + tail)
        elif args.layout == 'short_tail':  # no list, no instruction: 3 tokens of tail
            ids = head + img + enc(f' Which mark is {query}? ASSISTANT:')
        elif args.layout == 'bare_head':  # the system prompt, the image, the query
            ids = head + img + enc(f' {query}')
        elif args.layout == 'bare_list':  # ... with the mark list between image and query
            ids = head + img + enc(frame) + enc(f' {query}')
        elif args.layout == 'image_first':
            ids = head + img + enc(frame) + enc(ask + tail)
        elif args.layout == 'query_first':
            ids = head + enc(ask.strip()) + img + enc(frame) + enc(tail)
        else:
            ids = head + img + enc(frame) + enc(ask) + img + enc(tail)
        return ids, enc(f' {mark}') + [tok.eos_token_id]

    def batch_of(items):
        """items: (frame, query, mark) -> padded tensors and bookkeeping."""
        seqs = [build(f, q, m) for f, q, m in items]
        length = max(len(a) + len(b) for a, b in seqs)
        ids = torch.full((len(seqs), length), tok.pad_token_id or 0)
        img = torch.zeros(len(seqs), length, dtype=torch.bool)
        mask = torch.zeros(len(seqs), length, dtype=torch.long)
        pred, targets, answer_of, last_img = [], [], [], []
        for r, ((a, b), _) in enumerate(zip(seqs, items)):
            full = a + b
            t = torch.tensor(full)
            img[r, :len(full)] = t == IMG
            ids[r, :len(full)] = t.clamp(min=0)
            mask[r, :len(full)] = 1
            for j, y in enumerate(b):
                pred.append((r, len(a) + j - 1))
                targets.append(y)
                answer_of.append(r)
            starts = [k for k in range(len(a)) if a[k] == IMG and (k == 0 or a[k - 1] != IMG)]
            last_img.append(starts[-1])
        feats = one_hot_tokens(torch.stack([torch.from_numpy(f.dense.marked)
                                            for f, _, _ in items]), sel)
        flag = torch.stack([torch.from_numpy(f.dense.marked[mark_row]) == m
                            for f, _, m in items]).float()
        return ids, img, mask, torch.tensor(pred), torch.tensor(targets), \
            torch.tensor(answer_of), torch.tensor(last_img), feats, flag

    def forward(items):
        ids, img, mask, pred, targets, answer_of, last_img, feats, flag = batch_of(items)
        emb = lm.embed_tokens(ids)
        copies = int(img[0].sum()) // n_img
        emb = emb.masked_scatter(img[..., None],
                                 oracle(feats).repeat_interleave(copies, 0)
                                 if copies > 1 else oracle(feats))
        out = lm(inputs_embeds=emb, attention_mask=mask, output_hidden_states=True)
        logits = lm_head(out.last_hidden_state[pred[:, 0], pred[:, 1]])
        loss = torch.nn.functional.cross_entropy(logits, targets)
        hit = (logits.argmax(-1) == targets).float()
        per = torch.ones(len(items)).scatter_reduce(0, answer_of, hit, reduce='amin')
        if args.flag_aux:
            h = out.hidden_states[args.flag_layer]
            rows = torch.arange(len(items))[:, None]
            cols = last_img[:, None] + torch.arange(n_img)
            logit = flag_head(h[rows, cols]).squeeze(-1)
            bce = torch.nn.functional.binary_cross_entropy_with_logits(logit, flag,
                                                                       reduction='none')
            pos, neg = flag, 1 - flag
            balanced = ((bce * pos).sum(1) / pos.sum(1).clamp(min=1)
                        + (bce * neg).sum(1) / neg.sum(1).clamp(min=1)) / 2
            loss = loss + args.flag_aux * balanced.mean()
        return loss, per

    params = [*lm.parameters(), *lm_head.parameters(), *oracle.parameters(),
              *flag_head.parameters()]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    rng = random.Random(0)
    val_items = [(f, q, m, rel) for f in val for q, m, rel in f.queries]

    def evaluate():
        lm.eval()
        hits = []
        with torch.no_grad():
            for i in range(0, len(val_items), 96):
                chunk = val_items[i:i + 96]
                hits.append(forward([(f, q, m) for f, q, m, _ in chunk])[1])
        lm.train()
        hit = torch.cat(hits)
        return float(hit.mean()), per_relation(hit, [r for *_, r in val_items])

    t0, log = time.time(), []
    for step in range(1, args.steps + 1):
        for g in opt.param_groups:
            g['lr'] = lr_at(args.lr, step, args.steps)
        items = []
        for f in (train[rng.randrange(len(train))] for _ in range(args.frames_per_step)):
            qs = f.queries if len(f.queries) <= args.queries_per_frame else \
                rng.sample(f.queries, args.queries_per_frame)
            if args.permute_marks:  # the same frame under other numbers: a new lookup
                new = shuffled_ids(f.mark_ids, rng)
                f = SimpleNamespace(mark_ids=f.mark_ids, dense=SimpleNamespace(
                    marked=renumber_dense(f.dense.marked, new)))
                qs = [(q, new[m], rel) for q, m, rel in qs]
            items += [(f, q, m) for q, m, _ in qs]
        loss, per = forward(items)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if step % 50 == 0 or step == args.steps:
            row = {'step': step, 'loss': round(float(loss.detach()), 3),
                   'train_acc': round(float(per.mean()), 3), 'wall_s': round(time.time() - t0)}
            if step % 200 == 0 or step == args.steps:
                acc, per_rel = evaluate()
                row['val_acc'] = round(acc, 3)
                row['val_per_relation'] = per_rel
            print(args.tag, row, flush=True)
            log.append(row)
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / f'{args.tag}.json').write_text(json.dumps(
                {'args': {k: str(v) for k, v in vars(args).items()}, 'curve': log},
                indent=1) + '\n')


if __name__ == '__main__':
    main()
