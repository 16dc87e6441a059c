"""Token tree for scoring every mark of every query in one forward pass.

After a cached (or in-pass) frame prefix of length P, the sequence holds, per query, the
query tokens and then each mark's answer tokens. A 4D attention mask lets every token see
the whole prefix plus its own ancestors only (its query, and earlier tokens of the same
answer), and position ids restart per branch, so each answer is scored exactly as if it
were the only continuation: log P(answer | prefix, query) = sum of its token log-probs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class TokenTree:
    """Flattened tokens of B queries x N candidates, with what is needed to score them."""

    ids: torch.Tensor  # (T,) token ids
    depth: torch.Tensor  # (T,) position offset after the prefix
    group: torch.Tensor  # (T,) query index
    branch: torch.Tensor  # (T,) candidate index, -1 for query tokens
    logit_pos: torch.Tensor  # (K,) positions (in the tree) whose logits predict a target
    targets: torch.Tensor  # (K,) the token each of those positions must predict
    segment: torch.Tensor  # (K,) b * N + n: which (query, candidate) the target belongs to
    num_queries: int
    num_candidates: int

    @property
    def length(self) -> int:
        return int(self.ids.numel())


def build_tree(query_ids: list[list[int]], candidate_ids: list[list[int]]) -> TokenTree:
    """Lay out queries and candidates; the first answer token is predicted by the last
    query token, each later one by the answer token before it."""
    ids: list[int] = []
    depth: list[int] = []
    group: list[int] = []
    branch: list[int] = []
    logit_pos: list[int] = []
    targets: list[int] = []
    segment: list[int] = []
    n_cand = len(candidate_ids)
    for b, q in enumerate(query_ids):
        if not q:
            raise ValueError('a query has no tokens')
        start = len(ids)
        ids += q
        depth += range(len(q))
        group += [b] * len(q)
        branch += [-1] * len(q)
        last_query = start + len(q) - 1
        for n, cand in enumerate(candidate_ids):
            if not cand:
                raise ValueError(f'candidate {n} has no tokens')
            cstart = len(ids)
            ids += cand
            depth += range(len(q), len(q) + len(cand))
            group += [b] * len(cand)
            branch += [n] * len(cand)
            for j, tok in enumerate(cand):
                logit_pos.append(last_query if j == 0 else cstart + j - 1)
                targets.append(tok)
                segment.append(b * n_cand + n)
    as_long = lambda x: torch.tensor(x, dtype=torch.long)  # noqa: E731
    return TokenTree(
        as_long(ids),
        as_long(depth),
        as_long(group),
        as_long(branch),
        as_long(logit_pos),
        as_long(targets),
        as_long(segment),
        len(query_ids),
        n_cand,
    )


def tree_mask(tree: TokenTree) -> torch.Tensor:
    """(T, T) bool: token i may attend to token j (ancestor or itself)."""
    idx = torch.arange(tree.length)
    g, br = tree.group, tree.branch
    same_query = g[:, None] == g[None, :]
    causal = idx[None, :] <= idx[:, None]
    on_path = (br[None, :] == -1) | (br[None, :] == br[:, None])
    return same_query & causal & on_path


def additive_mask(
    prefix_len: int, tree: TokenTree, with_prefix_queries: bool, dtype: torch.dtype
) -> torch.Tensor:
    """(1, 1, q, P + T) float mask (0 = attend, min = blocked) for sdpa/eager attention.

    ``with_prefix_queries``: the prefix tokens are in this forward too (new frame, one
    pass), so they get causal rows; otherwise they come from the KV cache.
    """
    t = tree.length
    tree_part = tree_mask(tree)
    if with_prefix_queries:
        p = prefix_len
        allowed = torch.zeros(p + t, p + t, dtype=torch.bool)
        allowed[:p, :p] = torch.ones(p, p, dtype=torch.bool).tril()
        allowed[p:, :p] = True
        allowed[p:, p:] = tree_part
    else:
        allowed = torch.cat([torch.ones(t, prefix_len, dtype=torch.bool), tree_part], dim=1)
    mask = torch.zeros(allowed.shape, dtype=dtype)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask[None, None]
