"""EASE: a closed-form linear item-item autoencoder, exact or pruned to the most popular items.

Reference: H. Steck, "Embarrassingly Shallow Autoencoders for Sparse Data", WWW 2019
(https://arxiv.org/abs/1905.03375); defaults as RecBole's ``EASE`` (``reg_weight=250.0``).
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp

from m6rec.data.dataset import Dataset
from m6rec.data.histories import Histories
from m6rec.memory import GB, budget_bytes, check_memory
from m6rec.models.base import Recommender

log = logging.getLogger(__name__)

#: ``max_items="auto"`` never keeps more items than this: the solve is cubic in the kept items
#: (about a minute for 10,000 on two cores), so memory alone would allow hours-long fits.
AUTO_MAX_ITEMS = 20_000
_GRAM_BLOCK = 2048  # rows of the Gram matrix built at once (bounds the sparse temporaries)


def solve_bytes(n_items: int) -> int:
    """Peak bytes of the dense solve on ``n_items`` items: the float64 Gram matrix, inverted in
    place, plus the float32 weights kept, plus one block of sparse temporaries."""
    return 12 * n_items * n_items + 24 * _GRAM_BLOCK * n_items + 64 * 1024**2


class EASE(Recommender):
    """Score = history @ B, with B the ridge regression of every item on all the others.

    ``P = (X^T X + reg I)^-1``, ``B = I - P / diag(P)`` (column-wise), so ``diag(B) = 0``.
    The inverse is taken in float64 (Cholesky, in place); ``B`` [n, n] is stored as float32, so
    memory grows with the square of the catalogue: the fit needs about ``12 n^2`` bytes (1.2 GB
    at 10,000 items, 120 GB at 100,000). Before allocating, ``fit`` compares that with
    ``memory_gb`` and the memory available, and refuses at once (`m6rec.memory.MemoryBudgetError`)
    naming what to use instead.

    **Pruned EASE** (``max_items``): exact EASE on the sub-catalogue of the ``max_items`` items
    with the most users (ties: lower index first), as if the other items did not exist: B is the
    closed form on ``X[:, kept]``; every other item has B's row and column zero, so it scores 0
    and never raises another item's score. With ``max_items >= n_items`` nothing is pruned and
    the model is exact EASE.

    Parameters
    ----------
    reg : float
        L2 weight added to the Gram matrix's diagonal (> 0).
    decay : float
        In (0, 1]: at scoring, each history item's row of ``B`` weighs ``decay ** age`` (age 0
        the newest item, 1 the one before ...; a repeated item counts once, at its newest
        place), a recency-aware EASE for next-item prediction. 1 = plain EASE (RecBole's). On
        ml-100k ``loo``, ``reg=500 decay=0.8`` scores NDCG@10 0.112 where plain EASE scores 0.077.
    max_items : int, "auto" or None
        None: exact EASE (refused when it does not fit). An int: pruned EASE on at most that many
        items. ``"auto"``: exact when it fits, else pruned to the most items that fit the budget
        (at most `AUTO_MAX_ITEMS`), with a log line saying so.
    memory_gb : float
        Cap on the fit's estimated peak memory (GB); the budget is the smaller of this and the
        machine's available memory.
    """

    name = "ease"

    def __init__(self, reg: float = 250.0, decay: float = 1.0, max_items: int | str | None = None,
                 memory_gb: float = 16.0):
        self.reg = reg
        self.decay = decay
        self.max_items = max_items
        self.memory_gb = memory_gb

    def _kept_count(self, n_items: int) -> int:
        mi = self.max_items
        if mi is None:
            return n_items
        if mi == "auto":
            budget, _ = budget_bytes(float(self.memory_gb))
            if solve_bytes(n_items) <= budget:
                return n_items
            m = int(np.sqrt(max(0, budget - 64 * 1024**2) / 12))
            while m > 1 and solve_bytes(m) > budget:
                m -= 64
            return max(1, min(m, AUTO_MAX_ITEMS, n_items))
        if isinstance(mi, bool) or not isinstance(mi, int | np.integer) or mi < 1:
            raise ValueError(f"max_items must be a positive integer, 'auto' or None, got {mi!r}")
        return min(int(mi), n_items)

    def fit(self, dataset: Dataset, valid: Histories | None = None) -> EASE:
        if not self.reg > 0:
            raise ValueError(f"reg must be > 0, got {self.reg!r}")
        if not 0.0 < self.decay <= 1.0:
            raise ValueError(f"decay must be in (0, 1], got {self.decay!r}")
        if not self.memory_gb > 0:
            raise ValueError(f"memory_gb must be > 0, got {self.memory_gb!r}")
        n = dataset.n_items
        m = self._kept_count(n)
        x = dataset.csr()
        if m < n:
            users_per_item = x.getnnz(axis=0)
            kept = np.sort(np.argsort(-users_per_item, kind="stable")[:m]).astype(np.int64)
            share = users_per_item[kept].sum() / max(1, users_per_item.sum())
            log.info("EASE: pruned to the %d most popular of %d items (%.1f%% of the user-item "
                     "pairs); the other items score 0", m, n, 100 * share)
            x = x[:, kept]
        else:
            kept = None
        what = (f"EASE on {m:,} items (dense item x item solve)" if kept is None
                else f"pruned EASE on {m:,} of {n:,} items")
        fit_m = int(np.sqrt(budget_bytes(float(self.memory_gb))[0] / 12))
        check_memory(what, solve_bytes(m), float(self.memory_gb),
                     f"use ease with max_items='auto' or max_items=N (exact EASE on the N most "
                     f"popular items; about {solve_bytes(min(m, 10_000)) / GB:.1f} GB at "
                     f"N={min(m, 10_000):,}, at most ~{fit_m:,} fit), or a sparse model "
                     "(itemknn, als, bpr)")
        self.weights_ = _ease_weights(x, float(self.reg))
        self.items_ = kept
        self.n_items_, self.n_users_ = n, dataset.n_users
        return self

    def _score_rows(self, histories: Histories) -> np.ndarray:
        if self.decay == 1.0:
            h = histories.csr(self.n_items_)
        else:
            h = _recency_rows(histories, float(self.decay), self.n_items_)
        kept = getattr(self, "items_", None)
        if kept is None:
            return np.asarray(h @ self.weights_, dtype=np.float32)
        out = np.zeros((len(histories), self.n_items_), np.float32)
        out[:, kept] = h[:, kept] @ self.weights_
        return out

    def _state(self) -> dict[str, np.ndarray]:
        state = {"weights": self.weights_}
        if getattr(self, "items_", None) is not None:
            state["items"] = self.items_
        return state

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self.weights_ = state["weights"]
        self.items_ = state.get("items")


def _ease_weights(x: sp.csr_matrix, reg: float) -> np.ndarray:
    """B (float32 [m, m]) of the binary user x item matrix ``x`` [n_users, m]."""
    from scipy.linalg import lapack

    m = x.shape[1]
    x = x.astype(np.float64)
    xt = x.T.tocsr()
    g = np.empty((m, m), dtype=np.float64)
    for start in range(0, m, _GRAM_BLOCK):  # the Gram matrix block by block: no m x m sparse
        stop = min(m, start + _GRAM_BLOCK)
        g[start:stop] = (xt[start:stop] @ x).toarray()
    del xt, x
    g[np.diag_indices(m)] += reg
    # g is symmetric: its transpose is the Fortran-ordered view LAPACK works on in place
    c, info = lapack.dpotrf(g.T, lower=False, clean=False, overwrite_a=True)
    if info != 0:
        raise np.linalg.LinAlgError(f"EASE: the Gram matrix is not positive definite ({info})")
    p, info = lapack.dpotri(c, lower=False, overwrite_c=True)
    if info != 0:
        raise np.linalg.LinAlgError(f"EASE: the inverse failed ({info})")
    p = p.T  # C order again; dpotri filled the lower triangle (of this view) only
    for start in range(0, m, _GRAM_BLOCK):  # mirror it into the upper triangle, block-wise
        stop = min(m, start + _GRAM_BLOCK)
        p[start:stop, stop:] = p[stop:, start:stop].T
        blk = p[start:stop, start:stop]
        blk[np.triu_indices(stop - start, 1)] = blk.T[np.triu_indices(stop - start, 1)]
    p /= -np.diag(p).copy()[None, :]
    np.fill_diagonal(p, 0.0)
    return np.ascontiguousarray(p, dtype=np.float32)


def _recency_rows(histories: Histories, decay: float, n_items: int) -> sp.csr_matrix:
    """[n, n_items] with ``decay ** age`` at each history item (age 0 = the newest; a repeated
    item keeps its newest place)."""
    lengths = histories.lengths
    rows = np.repeat(np.arange(len(lengths)), lengths)
    items = histories.items
    age = np.repeat(histories.indptr[1:], lengths) - 1 - np.arange(len(items))
    order = np.lexsort((age, items, rows))  # per (row, item), the newest first
    rows, items, age = rows[order], items[order], age[order]
    first = np.ones(len(rows), bool)
    first[1:] = (rows[1:] != rows[:-1]) | (items[1:] != items[:-1])
    return sp.csr_matrix(((decay ** age[first].astype(np.float64)).astype(np.float32),
                          (rows[first], items[first])), shape=(len(lengths), n_items))
