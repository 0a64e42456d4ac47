"""Neighbourhood models: item-based and user-based k-nearest neighbours with cosine similarity.

Both follow RecBole's ``ItemKNN`` / ``ComputeSimilarity`` (itself from Maurizio Ferrari Dacrema's
``RecSys2019_DeepLearning_Evaluation``): cosine with a shrink term in the denominator, the top-k
neighbours kept as a sparse matrix. Reference: B. Sarwar et al., "Item-based collaborative
filtering recommendation algorithms", WWW 2001.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from m6rec.data.dataset import Dataset
from m6rec.data.histories import Histories
from m6rec.models.base import Recommender

_BLOCK = 2048  # rows of the similarity matrix computed at once (bounds memory)


def _check_params(k: int, shrink: float) -> None:
    if int(k) != k or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    if not shrink >= 0:
        raise ValueError(f"shrink must be >= 0, got {shrink!r}")


def _sqrt_counts(counts: np.ndarray) -> np.ndarray:
    """sqrt of per-row / per-column counts, float64."""
    return np.sqrt(np.asarray(counts, dtype=np.float64).ravel())


def topk_per_row(m: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Keep the k largest stored values of each row of a CSR matrix (ties: lower column first).

    Vectorised: one lexsort over all stored entries, no loop over rows."""
    m = m.tocsr()
    m.eliminate_zeros()
    lengths = np.diff(m.indptr)
    if lengths.size == 0 or lengths.max(initial=0) <= k:
        return m
    rows = np.repeat(np.arange(m.shape[0]), lengths)
    order = np.lexsort((m.indices, -m.data, rows))
    rank = np.arange(len(order)) - np.repeat(m.indptr[:-1], lengths)
    keep = order[rank < k]  # ``order`` is grouped by row, so rank is the position within the row
    out = sp.csr_matrix((m.data[keep], (rows[keep], m.indices[keep])), shape=m.shape)
    out.sort_indices()
    return out


def _csr_state(prefix: str, m: sp.csr_matrix) -> dict[str, np.ndarray]:
    return {f"{prefix}_data": m.data, f"{prefix}_indices": m.indices,
            f"{prefix}_indptr": m.indptr, f"{prefix}_shape": np.asarray(m.shape, np.int64)}


def _csr_from_state(prefix: str, state: dict[str, np.ndarray]) -> sp.csr_matrix:
    shape = tuple(int(s) for s in state[f"{prefix}_shape"])
    return sp.csr_matrix((state[f"{prefix}_data"], state[f"{prefix}_indices"],
                          state[f"{prefix}_indptr"]), shape=shape)


class ItemKNN(Recommender):
    """Item-based k-NN: score = history @ S with S the pruned item-item cosine similarity.

    ``sim(i, j) = |U_i ∩ U_j| / (sqrt|U_i| sqrt|U_j| + shrink)``, diagonal zero; column ``j`` of
    ``S`` keeps only the ``k`` items most similar to ``j`` (RecBole's ItemKNN).

    Parameters
    ----------
    k : int
        Neighbours kept per item.
    shrink : float
        Added to the cosine denominator; damps similarities computed from few users.
    """

    name = "itemknn"

    def __init__(self, k: int = 100, shrink: float = 0.0):
        self.k = k
        self.shrink = shrink

    def fit(self, dataset: Dataset, valid: Histories | None = None) -> ItemKNN:
        _check_params(self.k, self.shrink)
        x = dataset.csr()  # [n_users, n_items]
        n_items = dataset.n_items
        norms = _sqrt_counts(x.getnnz(axis=0))
        xt = x.T.tocsr()
        blocks = []
        for start in range(0, n_items, _BLOCK):  # rows j of S^T = neighbours of item j
            stop = min(n_items, start + _BLOCK)
            co = (xt[start:stop] @ x).tocoo()  # [block, n_items] co-occurrence counts
            keep = co.row + start != co.col
            r, c = co.row[keep], co.col[keep]
            v = co.data[keep] / (norms[r + start] * norms[c] + self.shrink)
            block = sp.csr_matrix((v.astype(np.float32), (r, c)), shape=(stop - start, n_items))
            blocks.append(topk_per_row(block, int(self.k)))
        st = sp.vstack(blocks, format="csr") if blocks else sp.csr_matrix((0, n_items))
        self.similarity_ = st.T.tocsr().astype(np.float32)  # column j: j's neighbours
        self.n_items_, self.n_users_ = n_items, dataset.n_users
        return self

    def _score_rows(self, histories: Histories) -> np.ndarray:
        h = histories.csr(self.n_items_)
        return np.asarray((h @ self.similarity_).todense(), dtype=np.float32)

    def _state(self) -> dict[str, np.ndarray]:
        return _csr_state("similarity", self.similarity_)

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self.similarity_ = _csr_from_state("similarity", state)


class UserKNN(Recommender):
    """User-based k-NN: score = sims @ X over the ``k`` training users most similar to the query.

    ``sim(q, v) = |I_q ∩ I_v| / (sqrt|I_q| sqrt|I_v| + shrink)`` between the query history and
    each training user's items. A query row whose ``users`` index is a training user never counts
    that user as its own neighbour (it would only vote for items the user already has).

    Parameters
    ----------
    k : int
        Neighbouring training users kept per query.
    shrink : float
        Added to the cosine denominator.
    """

    name = "userknn"

    def __init__(self, k: int = 100, shrink: float = 0.0):
        self.k = k
        self.shrink = shrink

    def fit(self, dataset: Dataset, valid: Histories | None = None) -> UserKNN:
        _check_params(self.k, self.shrink)
        self.train_ = dataset.csr().astype(np.float32)  # [n_users, n_items]
        self.n_items_, self.n_users_ = dataset.n_items, dataset.n_users
        return self

    def _score_rows(self, histories: Histories) -> np.ndarray:
        h = histories.csr(self.n_items_)
        train = self.train_
        sims = (h @ train.T).tocsr()  # [n, n_users] co-occurrence counts
        rows = np.repeat(np.arange(sims.shape[0]), np.diff(sims.indptr))
        qn = _sqrt_counts(h.getnnz(axis=1))
        un = _sqrt_counts(train.getnnz(axis=1))
        denom = qn[rows] * un[sims.indices] + self.shrink
        sims.data = (sims.data / denom).astype(np.float32)
        sims.data[sims.indices == histories.users[rows]] = 0.0  # no self-vote
        sims = topk_per_row(sims, int(self.k))
        return np.asarray((sims @ train).todense(), dtype=np.float32)

    def _state(self) -> dict[str, np.ndarray]:
        return _csr_state("train", self.train_)

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self.train_ = _csr_from_state("train", state)
