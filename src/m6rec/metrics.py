"""Evaluation metrics: full-ranking accuracy, beyond-accuracy, AUC and rating errors.

Every function here is pure and vectorised over users (no Python loop over users;
the only loops are over metric names, cut-offs and fixed-size user chunks). The module sits
below both the models (which score their validation users with it) and ``m6rec.eval`` (which
re-exports it as ``m6rec.eval.metrics``).

Ranking conventions
-------------------
``ranked`` is an integer array ``[n_users, k]`` of item indices ordered best first.
The value ``-1`` is padding (a list shorter than ``k``) and is never a hit, never
counted as a covered item and never enters diversity or novelty.  A row must not
name the same item twice.

``targets`` is a CSR matrix ``[n_users, n_items]`` whose stored non-zeros mark the
relevant (held-out) items of each user.

The per-user accuracy metrics follow RecBole 1.2.1 (``recbole.evaluator.metrics``):
recall, precision, hit, MRR and NDCG at a cut-off ``k`` with the IDCG truncated at
``min(n_targets, k)``.  F1 is the harmonic mean of precision and recall at ``k``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse
import scipy.stats

__all__ = [
    "RANKING_METRICS",
    "auc",
    "f1_at_k",
    "hit_at_k",
    "hits_matrix",
    "intra_list_diversity",
    "item_coverage",
    "mae",
    "mrr_at_k",
    "ndcg_at_k",
    "novelty",
    "precision_at_k",
    "ranking_metrics",
    "recall_at_k",
    "rmse",
]

_CHUNK_USERS = 1024


# ----------------------------------------------------------------------------------------
# validation helpers
# ----------------------------------------------------------------------------------------


def _as_ranked(ranked: np.ndarray, name: str = "ranked") -> np.ndarray:
    arr = np.asarray(ranked)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array [n_users, k], got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must hold integer item indices, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def _check_k(k: int, width: int, name: str = "ranked") -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ValueError(f"k must be an integer, got {k!r}")
    k = int(k)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if k > width:
        raise ValueError(f"k={k} exceeds the number of ranked columns in {name} ({width})")
    return k


def _check_item_range(ranked: np.ndarray, n_items: int) -> None:
    if ranked.size == 0:
        return
    lo, hi = int(ranked.min()), int(ranked.max())
    if lo < -1:
        raise ValueError(f"ranked holds {lo}; item indices must be >= 0 (or -1 for padding)")
    if hi >= n_items:
        raise ValueError(f"ranked holds item {hi} but there are only {n_items} items")


def _check_per_user(
    hits: np.ndarray, n_targets: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, int]:
    h = np.asarray(hits)
    if h.ndim != 2:
        raise ValueError(f"hits must be a 2-D array [n_users, K], got shape {h.shape}")
    h = h.astype(bool, copy=False)
    nt = np.asarray(n_targets)
    if nt.ndim != 1 or nt.shape[0] != h.shape[0]:
        raise ValueError(
            f"n_targets must be 1-D with one entry per row of hits ({h.shape[0]}), "
            f"got shape {nt.shape}"
        )
    if nt.size and np.any(nt < 0):
        raise ValueError("n_targets must be non-negative")
    k = _check_k(k, h.shape[1], name="hits")
    return h, nt.astype(np.float64, copy=False), k


# ----------------------------------------------------------------------------------------
# hits
# ----------------------------------------------------------------------------------------


def hits_matrix(ranked: np.ndarray, targets: scipy.sparse.csr_matrix) -> np.ndarray:
    """Mark which ranked items are relevant.

    Parameters
    ----------
    ranked : np.ndarray, int, shape (n_users, k)
        Item indices ordered best first; ``-1`` is padding and never a hit.  A row
        must not repeat an item.
    targets : scipy.sparse.csr_matrix, shape (n_users, n_items)
        Binary relevance: stored non-zeros are the relevant items of each user.

    Returns
    -------
    np.ndarray, bool, shape (n_users, k)
        ``hits[u, r]`` is True iff ``ranked[u, r]`` is a target of user ``u``.

    Raises
    ------
    ValueError
        On mismatched numbers of users, item indices out of range or repeated items.

    Notes
    -----
    Targets are flattened to sorted keys ``u * n_items + item`` and the ranked
    entries are looked up with one ``np.searchsorted``: ``O(nnz + n_users * k * log nnz)``.
    """
    r = _as_ranked(ranked)
    if not scipy.sparse.issparse(targets):
        raise ValueError("targets must be a scipy.sparse matrix [n_users, n_items]")
    t = scipy.sparse.csr_matrix(targets, copy=True)
    n_users, n_items = t.shape
    if r.shape[0] != n_users:
        raise ValueError(f"ranked has {r.shape[0]} rows but targets has {n_users} users")
    _check_item_range(r, n_items)
    if r.size == 0:
        return np.zeros(r.shape, dtype=bool)

    # Repeated items would be counted twice and push recall/precision above 1.
    srt = np.sort(r, axis=1)
    dup = (srt[:, 1:] == srt[:, :-1]) & (srt[:, 1:] >= 0)
    if dup.any():
        row = int(np.flatnonzero(dup.any(axis=1))[0])
        raise ValueError(f"ranked row {row} repeats an item; each list must name an item once")

    t.sum_duplicates()  # also sorts the column indices of every row
    t.eliminate_zeros()
    rows = np.repeat(np.arange(n_users, dtype=np.int64), np.diff(t.indptr))
    keys = rows * np.int64(n_items) + t.indices.astype(np.int64)  # globally sorted

    valid = r >= 0
    if keys.size == 0:
        return np.zeros(r.shape, dtype=bool)
    query = np.arange(n_users, dtype=np.int64)[:, None] * np.int64(n_items) + r
    pos = np.searchsorted(keys, query)
    pos = np.minimum(pos, keys.size - 1)
    return (keys[pos] == query) & valid


def _n_targets(targets: scipy.sparse.spmatrix) -> np.ndarray:
    t = scipy.sparse.csr_matrix(targets, copy=True)
    t.sum_duplicates()
    t.eliminate_zeros()
    return np.diff(t.indptr).astype(np.int64)


# ----------------------------------------------------------------------------------------
# per-user accuracy metrics
# ----------------------------------------------------------------------------------------


def recall_at_k(hits: np.ndarray, n_targets: np.ndarray, k: int) -> np.ndarray:
    """Recall@k: hits in the top ``k`` divided by the number of targets.

    Parameters
    ----------
    hits : np.ndarray, bool, shape (n_users, K)
        Output of :func:`hits_matrix`, ``K >= k``.
    n_targets : np.ndarray, int, shape (n_users,)
        Number of relevant items of each user.
    k : int
        Cut-off, ``1 <= k <= K``.

    Returns
    -------
    np.ndarray, float64, shape (n_users,)
        0 for users without targets.
    """
    h, nt, k = _check_per_user(hits, n_targets, k)
    n_hit = h[:, :k].sum(axis=1, dtype=np.float64)
    return np.divide(n_hit, nt, out=np.zeros_like(n_hit), where=nt > 0)


def precision_at_k(hits: np.ndarray, n_targets: np.ndarray, k: int) -> np.ndarray:
    """Precision@k: hits in the top ``k`` divided by ``k``.

    Parameters
    ----------
    hits : np.ndarray, bool, shape (n_users, K)
    n_targets : np.ndarray, int, shape (n_users,)
    k : int

    Returns
    -------
    np.ndarray, float64, shape (n_users,)
        0 for users without targets.
    """
    h, nt, k = _check_per_user(hits, n_targets, k)
    out = h[:, :k].sum(axis=1, dtype=np.float64) / k
    out[nt == 0] = 0.0
    return out


def hit_at_k(hits: np.ndarray, n_targets: np.ndarray, k: int) -> np.ndarray:
    """Hit@k (hit ratio): 1 if any of the top ``k`` items is a target, else 0.

    Parameters
    ----------
    hits : np.ndarray, bool, shape (n_users, K)
    n_targets : np.ndarray, int, shape (n_users,)
    k : int

    Returns
    -------
    np.ndarray, float64, shape (n_users,)
    """
    h, nt, k = _check_per_user(hits, n_targets, k)
    out = h[:, :k].any(axis=1).astype(np.float64)
    out[nt == 0] = 0.0
    return out


def mrr_at_k(hits: np.ndarray, n_targets: np.ndarray, k: int) -> np.ndarray:
    """MRR@k: reciprocal of the 1-based rank of the first hit within the top ``k``.

    Parameters
    ----------
    hits : np.ndarray, bool, shape (n_users, K)
    n_targets : np.ndarray, int, shape (n_users,)
    k : int

    Returns
    -------
    np.ndarray, float64, shape (n_users,)
        0 when there is no hit in the top ``k`` or no target.
    """
    h, nt, k = _check_per_user(hits, n_targets, k)
    top = h[:, :k]
    first = top.argmax(axis=1)
    any_hit = top.any(axis=1) & (nt > 0)
    return np.where(any_hit, 1.0 / (first + 1.0), 0.0)


def ndcg_at_k(hits: np.ndarray, n_targets: np.ndarray, k: int) -> np.ndarray:
    """NDCG@k with binary gains, as in RecBole.

    ``DCG = sum_{r < k, hit at r} 1 / log2(r + 2)`` (``r`` 0-based) and
    ``IDCG = sum_{r < min(n_targets, k)} 1 / log2(r + 2)``.

    Parameters
    ----------
    hits : np.ndarray, bool, shape (n_users, K)
    n_targets : np.ndarray, int, shape (n_users,)
    k : int

    Returns
    -------
    np.ndarray, float64, shape (n_users,)
        0 for users without targets.
    """
    h, nt, k = _check_per_user(hits, n_targets, k)
    disc = 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))  # [k]
    dcg = h[:, :k].astype(np.float64) @ disc
    ideal_cum = np.concatenate(([0.0], np.cumsum(disc)))  # ideal_cum[j] = sum_{r<j} disc[r]
    idcg = ideal_cum[np.minimum(nt, k).astype(np.int64)]
    return np.divide(dcg, idcg, out=np.zeros_like(dcg), where=idcg > 0)


def f1_at_k(hits: np.ndarray, n_targets: np.ndarray, k: int) -> np.ndarray:
    """F1@k: harmonic mean ``2PR / (P + R)`` of precision@k and recall@k.

    Parameters
    ----------
    hits : np.ndarray, bool, shape (n_users, K)
    n_targets : np.ndarray, int, shape (n_users,)
    k : int

    Returns
    -------
    np.ndarray, float64, shape (n_users,)
        0 where ``P + R == 0``.
    """
    p = precision_at_k(hits, n_targets, k)
    r = recall_at_k(hits, n_targets, k)
    s = p + r
    return np.divide(2.0 * p * r, s, out=np.zeros_like(s), where=s > 0)


RANKING_METRICS = {
    "recall": recall_at_k,
    "ndcg": ndcg_at_k,
    "mrr": mrr_at_k,
    "hit": hit_at_k,
    "precision": precision_at_k,
    "f1": f1_at_k,
}


def ranking_metrics(
    ranked: np.ndarray,
    targets: scipy.sparse.csr_matrix,
    ks: Sequence[int] = (10, 20),
    metrics: Sequence[str] = ("recall", "ndcg", "mrr", "hit", "precision", "f1"),
) -> dict[str, float]:
    """Mean full-ranking metrics over the users that have at least one target.

    Parameters
    ----------
    ranked : np.ndarray, int, shape (n_users, K)
        Item indices ordered best first (``-1`` = padding), ``K >= max(ks)``.
    targets : scipy.sparse.csr_matrix, shape (n_users, n_items)
        Binary relevance of the held-out items.
    ks : sequence of int
        Cut-offs.
    metrics : sequence of str
        Any of ``recall``, ``ndcg``, ``mrr``, ``hit``, ``precision``, ``f1``.

    Returns
    -------
    dict[str, float]
        Keys ``"<metric>@<k>"`` (e.g. ``"ndcg@10"``), in the order metrics x ks.

    Raises
    ------
    ValueError
        On unknown metric names, bad cut-offs or when no user has a target.
    """
    r = _as_ranked(ranked)
    ks = [int(k) for k in ks]
    if not ks:
        raise ValueError("ks must name at least one cut-off")
    for k in ks:
        _check_k(k, r.shape[1])
    metrics = list(metrics)
    unknown = [m for m in metrics if m not in RANKING_METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; choose from {sorted(RANKING_METRICS)}")

    kmax = max(ks)
    hits = hits_matrix(r[:, :kmax], targets)
    n_t = _n_targets(targets)
    keep = n_t > 0
    if not keep.any():
        raise ValueError("no user has a target; ranking metrics are undefined")
    hits, n_t = hits[keep], n_t[keep]

    out: dict[str, float] = {}
    for m in metrics:
        fn = RANKING_METRICS[m]
        for k in ks:
            out[f"{m}@{k}"] = float(fn(hits, n_t, k).mean())
    return out


# ----------------------------------------------------------------------------------------
# beyond-accuracy
# ----------------------------------------------------------------------------------------


def item_coverage(ranked: np.ndarray, n_items: int, k: int) -> float:
    """Catalogue coverage: distinct items in all top-``k`` lists divided by ``n_items``.

    Parameters
    ----------
    ranked : np.ndarray, int, shape (n_users, K)
        ``-1`` entries are ignored.
    n_items : int
        Catalogue size (> 0).
    k : int
        Cut-off, ``1 <= k <= K``.

    Returns
    -------
    float
        In ``[0, 1]``.
    """
    r = _as_ranked(ranked)
    k = _check_k(k, r.shape[1])
    if int(n_items) < 1:
        raise ValueError(f"n_items must be >= 1, got {n_items}")
    top = r[:, :k]
    _check_item_range(top, int(n_items))
    seen = np.zeros(int(n_items), dtype=bool)
    seen[top[top >= 0]] = True
    return float(seen.sum() / int(n_items))


def intra_list_diversity(ranked: np.ndarray, item_vectors: np.ndarray, k: int) -> float:
    """Intra-list diversity: mean over lists of ``1 - mean pairwise cosine similarity``.

    Parameters
    ----------
    ranked : np.ndarray, int, shape (n_users, K)
        Item indices; ``-1`` padding and the pairs it would form are left out.
    item_vectors : np.ndarray or scipy.sparse matrix, float, shape (n_items, d)
        Item features (multi-hot categories, text embeddings, ...).  Rows are
        L2-normalised here; all-zero rows stay zero (cosine 0 with everything).
    k : int
        Cut-off, ``2 <= k <= K``.

    Returns
    -------
    float
        Mean over lists with at least two (non-padding) items.  For non-negative
        features it lies in ``[0, 1]``.

    Notes
    -----
    For the unit vectors ``v_1..v_m`` of a list, the sum of the ``m(m-1)/2`` pairwise
    dot products is ``(||sum_i v_i||^2 - sum_i ||v_i||^2) / 2``.  The per-list sum
    ``sum_i v_i`` is a sparse indicator ``[chunk, n_items]`` times the normalised
    vectors, computed for 1024 users at a time, so memory is ``O(1024 * d)`` and no
    ``k x k`` similarity block is formed.
    """
    r = _as_ranked(ranked)
    k = _check_k(k, r.shape[1])
    if k < 2:
        raise ValueError("intra_list_diversity needs k >= 2 (pairs of items)")
    if not scipy.sparse.issparse(item_vectors):
        item_vectors = np.asarray(item_vectors, dtype=np.float64)
    if item_vectors.ndim != 2:
        raise ValueError(f"item_vectors must be 2-D [n_items, d], got shape {item_vectors.shape}")
    n_items = item_vectors.shape[0]
    top = r[:, :k]
    _check_item_range(top, n_items)

    if scipy.sparse.issparse(item_vectors):
        v = scipy.sparse.csr_matrix(item_vectors, dtype=np.float64)
        sq = np.asarray(v.multiply(v).sum(axis=1)).ravel()
        norms = np.sqrt(sq)
        inv = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
        vn = scipy.sparse.diags(inv) @ v
    else:
        v = item_vectors
        norms = np.linalg.norm(v, axis=1)
        inv = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
        vn = v * inv[:, None]
    unit_sq = (norms > 0).astype(np.float64)  # ||v_i||^2 after normalisation: 1 or 0

    valid = top >= 0
    m = valid.sum(axis=1)
    totals: list[np.ndarray] = []
    for start in range(0, top.shape[0], _CHUNK_USERS):
        t = top[start : start + _CHUNK_USERS]
        ok = valid[start : start + _CHUNK_USERS]
        b = t.shape[0]
        rows = np.broadcast_to(np.arange(b)[:, None], t.shape)[ok]
        ind = scipy.sparse.csr_matrix(
            (np.ones(rows.size), (rows, t[ok])), shape=(b, n_items)
        )  # duplicate (row, item) entries are summed
        s = ind @ vn
        s = s.toarray() if scipy.sparse.issparse(s) else np.asarray(s)
        sum_sq = np.einsum("bd,bd->b", s, s)
        self_sq = np.where(ok, unit_sq[np.where(ok, t, 0)], 0.0).sum(axis=1)
        totals.append((sum_sq - self_sq) / 2.0)
    if not totals:
        raise ValueError("ranked has no lists")
    pair_sum = np.concatenate(totals)
    n_pairs = m * (m - 1) / 2.0
    has = n_pairs > 0
    if not has.any():
        raise ValueError("no list has two or more items; diversity is undefined")
    div = 1.0 - pair_sum[has] / n_pairs[has]
    return float(div.mean())


def novelty(ranked: np.ndarray, item_counts: np.ndarray, n_users: int, k: int) -> float:
    """Novelty: mean self-information ``-log2(max(count_i, 1) / n_users)`` of recommended items.

    Parameters
    ----------
    ranked : np.ndarray, int, shape (n_lists, K)
        ``-1`` entries are ignored.
    item_counts : np.ndarray, int, shape (n_items,)
        Popularity of each item (e.g. number of training users who interacted).
    n_users : int
        Normaliser of the popularity (number of training users, >= 1).
    k : int
        Cut-off, ``1 <= k <= K``.

    Returns
    -------
    float
        Mean over every non-padding item in every top-``k`` list (in bits).
    """
    r = _as_ranked(ranked)
    k = _check_k(k, r.shape[1])
    counts = np.asarray(item_counts)
    if counts.ndim != 1:
        raise ValueError(f"item_counts must be 1-D [n_items], got shape {counts.shape}")
    if int(n_users) < 1:
        raise ValueError(f"n_users must be >= 1, got {n_users}")
    top = r[:, :k]
    _check_item_range(top, counts.shape[0])
    items = top[top >= 0]
    if items.size == 0:
        raise ValueError("ranked holds no items in the top k; novelty is undefined")
    c = np.maximum(counts[items].astype(np.float64), 1.0)
    return float(np.mean(-np.log2(c / float(n_users))))


# ----------------------------------------------------------------------------------------
# AUC and rating errors
# ----------------------------------------------------------------------------------------


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mean per-row ROC AUC from ranks (ties share the average rank).

    Parameters
    ----------
    scores : np.ndarray, float, shape (n, m) or (m,)
        Higher means more likely positive.
    labels : np.ndarray, bool, shape like ``scores``
        True for positives.

    Returns
    -------
    float
        Mean of ``(sum of positive ranks - P(P+1)/2) / (P * N)`` over the rows that
        have both a positive and a negative.

    Raises
    ------
    ValueError
        On shape mismatch, non-finite scores or when no row has both classes.
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels)
    if s.shape != y.shape:
        raise ValueError(f"scores {s.shape} and labels {y.shape} must have the same shape")
    if s.ndim == 1:
        s, y = s[None, :], y[None, :]
    if s.ndim != 2:
        raise ValueError(f"scores must be 1-D or 2-D, got shape {s.shape}")
    if s.size == 0:
        raise ValueError("auc of an empty input is undefined")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores must be finite")
    y = y.astype(bool)
    n_pos = y.sum(axis=1)
    n_neg = y.shape[1] - n_pos
    ok = (n_pos > 0) & (n_neg > 0)
    if not ok.any():
        raise ValueError("no row has both a positive and a negative label; AUC is undefined")
    s, y, n_pos, n_neg = s[ok], y[ok], n_pos[ok].astype(np.float64), n_neg[ok].astype(np.float64)
    ranks = scipy.stats.rankdata(s, axis=1)  # average ranks for ties, 1-based
    pos_rank_sum = np.where(y, ranks, 0.0).sum(axis=1)
    per_row = (pos_rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)
    return float(per_row.mean())


def _paired(pred: np.ndarray, true: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(pred, dtype=np.float64)
    t = np.asarray(true, dtype=np.float64)
    if p.shape != t.shape:
        raise ValueError(f"pred {p.shape} and true {t.shape} must have the same shape")
    if p.size == 0:
        raise ValueError("pred and true are empty")
    return p, t


def rmse(pred: np.ndarray, true: np.ndarray) -> float:
    """Root mean squared error.

    Parameters
    ----------
    pred, true : np.ndarray, float, same shape (any), non-empty

    Returns
    -------
    float
    """
    p, t = _paired(pred, true)
    return float(np.sqrt(np.mean((p - t) ** 2)))


def mae(pred: np.ndarray, true: np.ndarray) -> float:
    """Mean absolute error.

    Parameters
    ----------
    pred, true : np.ndarray, float, same shape (any), non-empty

    Returns
    -------
    float
    """
    p, t = _paired(pred, true)
    return float(np.mean(np.abs(p - t)))
