"""The user side of ``m6``: what turns a window of item vectors into user vectors.

Functions over plain tensors, shared by the trained network (`M6Module`) and its frozen,
exportable form (`m6rec.compress.frozen.FrozenM6`), so both compute the same thing:

- `gap_buckets`: time gaps -> log2 buckets of the time-gap embedding;
- `gru_states`: the GRU tower (GRU4Rec: Hidasi et al., ICLR 2016) over right-aligned windows;
- `long_term`: the order-free long-term taste ``W m`` (``m`` = mean item vector of the whole
  history up to each position, the window and the ``older`` items before it);
- `match_query`: the late-interaction text query of ``text_match``.

The Transformer tower is `m6rec.models.sasrec.causal_blocks`.
"""

from __future__ import annotations

import torch
from torch import nn

#: log2 buckets of the time gap (seconds) between consecutive interactions
N_GAP_BUCKETS = 32
#: user encoders (``tower``)
TOWERS = ("gru", "transformer")
#: attention heads of the Transformer tower (one head or a SASRec-sized block lost on ml-100k)
N_HEADS = 2


def gap_buckets(gaps: torch.Tensor) -> torch.Tensor:
    """Bucket indices [B, L] of time gaps [B, L] in seconds (0 .. N_GAP_BUCKETS - 1)."""
    return torch.log2(gaps.clamp(min=0) + 1).floor().long().clamp(max=N_GAP_BUCKETS - 1)


def gru_states(gru: nn.GRU, out: nn.Linear, drop: nn.Module, x: torch.Tensor,
               mask: torch.Tensor) -> torch.Tensor:
    """The GRU tower over right-aligned ``x`` [B, L, d]: rows are rolled so their items come
    first (the recurrent state never reads a pad before an item), run, mapped by ``out`` and
    rolled back; pads give 0."""
    B, L, _ = x.shape
    xr, lead = _items_first(x, mask)
    states, _ = gru(xr)
    h = out(drop(states))
    back = ((torch.arange(L, device=x.device)[None] - lead) % L)[..., None]
    return h.gather(1, back.expand(B, L, h.shape[2])) * mask[..., None]


def _items_first(x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-aligned rows ``x`` [B, L, d] rolled so their items come first, and the pads that
    stood before each row's first item [B, 1]."""
    B, L, d = x.shape
    lead = (L - mask.long().sum(1))[:, None]
    j = torch.arange(L, device=x.device)[None]
    return x.gather(1, ((j + lead) % L)[..., None].expand(B, L, d)), lead


def gru_last_shared(gru: nn.GRU, x: torch.Tensor, mask: torch.Tensor,
                    groups: torch.Tensor | None = None) -> torch.Tensor:
    """The GRU state [B, inner] at each right-aligned row's newest item, as `gru_states`
    reads the rows (items first), stopping at the batch's longest row. With ``groups`` (int
    [B]), the steps that the rows of one group share are computed once: the group's common
    leading inputs run as one row, and every row of the group runs on from that state. Rows
    of different groups never share."""
    B, L, _ = x.shape
    n_real = mask.long().sum(1)
    xr, _ = _items_first(x, mask)
    if groups is None:
        states, _ = gru(xr[:, : max(int(n_real.max()), 1)])
        return states[torch.arange(B), (n_real - 1).clamp(min=0)]
    out = x.new_zeros(B, gru.hidden_size)
    by_prefix: dict[int, list[torch.Tensor]] = {}
    for g in torch.unique(groups):
        rows = torch.nonzero(groups == g).flatten()
        shared = 0
        if len(rows) > 1:
            same = (xr[rows] == xr[rows[0]]).all(dim=2).all(dim=0)  # [L] all rows agree
            differ = torch.nonzero(~same).flatten()
            shared = int(differ[0]) if len(differ) else L
            # each row keeps at least its newest item to run on its own
            shared = max(min(shared, int(n_real[rows].min()) - 1), 0)
        by_prefix.setdefault(shared, []).append(rows)
    for shared, members in by_prefix.items():
        rows = torch.cat(members)
        end = max(int(n_real[rows].max()), 1)
        h0 = None
        if shared:
            _, h0 = gru(xr[torch.stack([m[0] for m in members]), :shared])  # [layers, G, h]
            owner = torch.cat([torch.full((len(m),), k, dtype=torch.long, device=x.device)
                               for k, m in enumerate(members)])
            h0 = h0[:, owner].contiguous()
        states, _ = gru(xr[rows, shared:end], h0)
        out[rows] = states[torch.arange(len(rows)), (n_real[rows] - 1 - shared).clamp(min=0)]
    return out


def long_term(proj: nn.Linear, drop: nn.Module, table: torch.Tensor, items: torch.Tensor,
              mask: torch.Tensor, older: torch.Tensor | None, limit: int,
              last: bool = False) -> torch.Tensor:
    """``proj(m)`` at every position of right-aligned windows [B, L]: ``m`` the mean of the
    item vectors ``table`` [n_items + 1, d] (pad row zero) of the window's items up to there
    and of the newest ``limit`` of the ``older`` items before the window [B, C] (pads -1).
    ``last``: at the newest position only ([B, 1, d])."""
    if last:
        total = (table[items] * mask[..., None]).sum(1, keepdim=True)
        count = mask.to(total.dtype).sum(1, keepdim=True)
        mask = mask[:, -1:]
    else:
        total = (table[items] * mask[..., None]).cumsum(1)
        count = mask.to(total.dtype).cumsum(1)  # (exact: small integers)
    if older is not None:
        older = older[:, -limit:]  # the teacher may have read more of them
        real = older >= 0
        total = total + table[torch.where(real, older, len(table) - 1)].sum(1)[:, None]
        count = count + real.to(total.dtype).sum(1, keepdim=True)
    mean = total / count.clamp(min=1.0)[..., None]
    return proj(drop(mean)) * mask[..., None]


def match_query(weights: torch.Tensor, scale: torch.Tensor, items: torch.Tensor,
                mask: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """``scale * q`` at every position of right-aligned windows [B, L]: the softmax-weighted
    mean (``weights`` [N], one per recency position, over the positions that hold an item) of
    the LM vectors ``text`` [n_items + 1, D] of the N newest items up to there."""
    B, L = items.shape
    N = len(weights)
    pad = len(text) - 1
    ip = torch.cat([items.new_full((B, N - 1), pad), items], dim=1)
    mp = torch.cat([mask.new_zeros((B, N - 1)), mask], dim=1)
    idx = torch.stack([ip[:, N - 1 - k: N - 1 - k + L] for k in range(N)], dim=2)
    ok = torch.stack([mp[:, N - 1 - k: N - 1 - k + L] for k in range(N)], dim=2)
    w = weights.masked_fill(~ok, float("-inf")).softmax(dim=2)
    w = torch.nan_to_num(w, nan=0.0) * mask[..., None]  # positions without items: 0
    return scale * torch.einsum("blk,blkd->bld", w, text[idx])
