"""Knowledge distillation from an EASE teacher: its next-item distribution at every training
position, used as soft targets of the full-softmax loss (`m6rec.train.losses.full_softmax_ce`
with ``soft=``), i.e. ``weight * KL(teacher || model)`` up to a constant.

EASE (Steck, WWW 2019) sees the whole history order-free, item by item, which a sequence tower
over the newest items misses (a score fusion of the two beats either); distilled, the student
learns that view in training and scores alone, with no teacher at serving time.

The teacher's weights come in two forms (`fit_teacher` picks one):

- **dense**: EASE's item x item matrix ``[n + 1, n]`` (the last row zero, for pads), when its
  solve fits the memory budget (about ``12 n^2`` bytes: 4.8 GB at 20,000 items);
- **top-k** (`TopK`): beyond that, EASE on the most popular items that fit
  (`m6rec.models.ease.EASE` with ``max_items="auto"``) keeping each item's ``k`` largest
  weights: ``k`` (column, weight) pairs per kept item instead of ``n`` weights per item, so the
  teacher holds ``12 k m + 8 n`` bytes rather than ``4 n^2``. Items outside the kept ones have
  no row (they add nothing to a score); the teacher's distribution covers only the items that
  the history's rows list. With every item kept and ``k = n`` it is the dense teacher.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from m6rec.data.dataset import Dataset
from m6rec.memory import GB, budget_bytes, check_memory

log = logging.getLogger("m6rec.models")

#: temperature of the teacher's softmax (EASE scores are ~0.01-1; 0.1 lost on ml-100k)
TEMPERATURE = 0.05
#: EASE's L2 weight (RecBole's default; 500 with recency weights was no better a teacher)
REG = 250.0
#: older items (before the training window) the teacher reads, at least
CONTEXT = 200
#: from this many items the dense teacher sums the older items' rows by a sparse matmul
SPARSE_FROM = 4096
#: weights kept per item by the top-k teacher
TOPK = 128
#: cap (GB) on the teacher's fit; the budget is the smaller of this and the available memory
MEMORY_GB = 16.0
_ROW_BLOCK = 1024  # rows of the dense weights ranked at once by the top-k selection


@dataclass(eq=False)
class TopK:
    """A sparse EASE teacher: ``k`` (column, weight) pairs per item with a row.

    Attributes
    ----------
    row : int64 [n + 1]
        Row of ``index`` / ``value`` holding item ``i``'s weights; items without weights (and
        the pad ``n``) point at the last row, whose weights are 0.
    index : int64 [m + 1, k]
        Column (item) of each kept weight; the last row's are ``n`` (a spare column).
    value : float32 [m + 1, k]
        The weights; the last row is zero.
    n_items : int
    """

    row: torch.Tensor
    index: torch.Tensor
    value: torch.Tensor
    n_items: int

    def nbytes(self) -> int:
        return sum(t.element_size() * t.nelement() for t in (self.row, self.index, self.value))

    def to_dense(self) -> torch.Tensor:
        """The dense weights ``[n + 1, n]``, 0 where none is kept (checks on small catalogues)."""
        out = self.value.new_zeros(self.n_items + 1, self.n_items + 1)
        return out.scatter_add_(1, self.index[self.row], self.value[self.row])[:, :-1]


def dense_bytes(n_items: int) -> int:
    """Peak bytes of the dense teacher: EASE's solve, or the padded copy beside the weights."""
    from m6rec.models.ease import solve_bytes

    return max(solve_bytes(n_items), 8 * (n_items + 1) * n_items)


def topk_bytes(n_items: int, kept: int, k: int) -> int:
    """Bytes of a `TopK` teacher (plus the ranking of one block of rows)."""
    return 12 * (kept + 1) * k + 8 * (n_items + 1) + 16 * _ROW_BLOCK * kept


def fit_teacher(dataset: Dataset, reg: float = REG, k: int | None = None,
                memory_gb: float | None = None, device: str | torch.device = "cpu"
                ) -> torch.Tensor | TopK:
    """The EASE teacher of ``dataset``: dense ``[n + 1, n]`` when it fits ``memory_gb`` (default
    `MEMORY_GB`; the budget is the smaller of it and the memory available), else `TopK` with
    `TOPK` weights per item; ``k`` forces the top-k form with ``k`` weights per item
    (``k >= n`` with every item kept is the dense teacher)."""
    from m6rec.models.ease import EASE

    n = dataset.n_items
    memory_gb = MEMORY_GB if memory_gb is None else memory_gb
    budget, why = budget_bytes(float(memory_gb))
    if k is None and dense_bytes(n) <= budget:
        w = torch.as_tensor(EASE(reg=reg).fit(dataset).weights_, device=device)
        return torch.cat([w, w.new_zeros(1, n)])  # pad row: no score
    k_top = TOPK if k is None else int(k)
    if k_top < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if k is None:
        log.info("m6: EASE teacher in top-k form: the dense one on %d items needs about %.1f GB, "
                 "more than %s", n, dense_bytes(n) / GB, why)
    ease = EASE(reg=reg, max_items="auto", memory_gb=memory_gb)
    m = ease._kept_count(n)
    k_top = min(k_top, m)
    check_memory(f"the top-k EASE teacher ({m:,} items x {k_top} weights)",
                 topk_bytes(n, m, k_top), float(memory_gb),
                 "train m6 with teacher_weight=0 (no teacher)")
    ease.fit(dataset)
    return topk_from_dense(ease.weights_, ease.items_, n, k_top, device)


def topk_from_dense(weights: np.ndarray, kept: np.ndarray | None, n_items: int, k: int,
                    device: str | torch.device = "cpu") -> TopK:
    """Each row's ``k`` largest entries of EASE's ``weights`` [m, m] over the items ``kept``
    (global indices of its rows and columns; None = all ``n_items``)."""
    m = weights.shape[0]
    k = min(int(k), m)
    cols = np.arange(m) if kept is None else np.asarray(kept, np.int64)
    index = np.full((m + 1, k), n_items, np.int64)  # the zero row points at a spare column
    value = np.zeros((m + 1, k), np.float32)
    for start in range(0, m, _ROW_BLOCK):
        blk = weights[start:start + _ROW_BLOCK]
        top = (np.argpartition(-blk, k - 1, axis=1)[:, :k] if k < m
               else np.broadcast_to(np.arange(m), blk.shape))
        top = np.sort(top, axis=1)
        index[start:start + len(blk)] = cols[top]
        value[start:start + len(blk)] = np.take_along_axis(blk, top, axis=1)
    row = np.full(n_items + 1, m, np.int64)
    row[cols] = np.arange(m)
    return TopK(row=torch.as_tensor(row, device=device),
                index=torch.as_tensor(index, device=device),
                value=torch.as_tensor(value, device=device), n_items=n_items)


def _older_sum(weights: torch.Tensor, older: torch.Tensor, n: int) -> torch.Tensor:
    """``[B, n]``: the sum of the dense teacher's rows ``weights[older]`` per row of ``older``
    [B, C] (pads = ``n``, the zero row): a matmul of the item counts, dense up to
    `SPARSE_FROM` items, sparse beyond (a row lists at most C items; the dense product costs
    ``B n^2`` and dominated a step at 10^4 items)."""
    if n < SPARSE_FROM:
        counts = torch.zeros(len(older), n + 1, device=older.device, dtype=weights.dtype)
        counts.scatter_add_(1, older, torch.ones(older.shape, device=older.device,
                                                 dtype=weights.dtype))
        return counts @ weights
    real = older < n
    b = torch.arange(len(older), device=older.device)[:, None].expand_as(older)[real]
    counts = torch.sparse_coo_tensor(
        torch.stack([b, older[real]]), torch.ones(len(b), device=older.device,
                                                  dtype=weights.dtype),
        (len(older), n + 1), check_invariants=False).coalesce()
    return torch.sparse.mm(counts, weights)


def ease_teacher(weights: torch.Tensor | TopK, items: torch.Tensor, mask: torch.Tensor,
                 older: torch.Tensor | None, rows: torch.Tensor, scale: float,
                 temperature: float = TEMPERATURE) -> torch.Tensor:
    """An EASE teacher's next-item distribution times ``scale`` [N, n] at the positions
    ``rows`` [B, L] (a subset of ``mask``) of right-aligned windows ``items`` [B, L].

    EASE (item-item ``weights``: dense [n + 1, n], the last row zero for pads, or `TopK`) reads
    the user's history up to each position: the window's items so far and the ``older`` ones
    before the window [B, C] (pads -1); its score is the sum of the history items' rows and the
    distribution ``softmax(score / temperature)`` over the items not in that history (a
    history of the whole catalogue gets none). A `TopK` teacher knows only the items that its
    history's rows list: the others get no mass (with ``k = n`` every item is listed)."""
    top = isinstance(weights, TopK)
    n = weights.n_items if top else weights.shape[1]
    with torch.no_grad():
        r = torch.where(mask, items, n)
        if top:  # [B, n + 1]: a pad adds its zero row into the spare column n
            s = weights.value.new_zeros(len(r), n + 1)
            listed = torch.zeros(len(r), n + 1, dtype=torch.bool, device=r.device)
        else:
            s = weights.new_zeros(len(r), n)
        if older is not None:
            o = torch.where(older >= 0, older, n)
            if top:  # the older items' rows, summed by one scatter
                idx = weights.index[weights.row[o]].flatten(1)
                s = s.scatter_add_(1, idx, weights.value[weights.row[o]].flatten(1))
                listed.scatter_(1, idx, True)
            else:  # the older items' rows, summed by a matmul of their counts
                s = _older_sum(weights, o, n)
        # s_t = s_{t-1} + B[r_t]; pads (left) add nothing
        if top:
            steps = []
            for j in range(r.shape[1]):
                rr = weights.row[r[:, j]]  # in place: each step keeps a masked copy
                s.scatter_add_(1, weights.index[rr], weights.value[rr])
                listed.scatter_(1, weights.index[rr], True)
                steps.append(s.masked_fill(~listed, float("-inf"))[:, :n])
            score = torch.stack(steps, 1)
        else:  # one gather (a pad reads the zero row), then a running sum in place, in order
            score = weights[r]
            score[:, 0] += s
            for j in range(1, r.shape[1]):
                score[:, j] += score[:, j - 1]
        b, t = rows.nonzero(as_tuple=True)
        # each kept row's history, as indices to blank; pads and later items point at the
        # row's own item, which is real and in the history anyway
        own = r[b, t][:, None]
        later = torch.arange(r.shape[1], device=r.device)[None] > t[:, None]
        hist = torch.where(later | (r[b] == n), own, r[b])
        if older is not None:
            hist = torch.cat([hist, torch.where(o[b] == n, own, o[b])], dim=1)
        z = score[b, t].div_(temperature).scatter_(1, hist, float("-inf"))
        # softmax in place; a row with no item left (the whole catalogue seen, or a top-k
        # teacher listing none) gets no mass
        z.sub_(z.amax(1, keepdim=True).nan_to_num_(0.0, 0.0, 0.0)).exp_()
        return z.mul_(scale / z.sum(1, keepdim=True).clamp_min_(1e-30))
