"""Row-wise top-k of score matrices, shared by the models, the indexes and the service."""

from __future__ import annotations

import numpy as np


def topk(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise top-k of a dense matrix, sorted best first; -inf entries become -1 padding.

    Fully deterministic: equal scores are ordered by item index, also at the k-th place (so a
    row's result never depends on the other rows of the batch)."""
    n, m = scores.shape
    kk = min(k, m)
    if kk < m:
        # some k largest per row; where exactly k entries reach the k-th largest value that
        # set is the only one, elsewhere (ties at the k-th place, NaN) `_top_set` decides
        part = np.argpartition(scores, m - kk, axis=1)[:, m - kk:]
        thr = np.take_along_axis(scores, part, axis=1).min(axis=1, keepdims=True)
        odd = np.flatnonzero(np.count_nonzero(scores >= thr, axis=1) != kk)
        if odd.size:
            part[odd] = _top_set(scores[odd], kk)
    else:
        part = np.broadcast_to(np.arange(m), (n, m)).copy()
    vals = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -vals), axis=1)
    ids = np.take_along_axis(part, order, axis=1).astype(np.int64)
    vals = np.take_along_axis(vals, order, axis=1)
    ids[~np.isfinite(vals) & (vals < 0)] = -1
    out_ids = np.full((n, k), -1, dtype=np.int64)
    out_vals = np.full((n, k), -np.inf, dtype=np.float32)
    out_ids[:, :kk], out_vals[:, :kk] = ids, vals
    out_vals[out_ids < 0] = -np.inf
    return out_ids, out_vals


def _top_set(scores: np.ndarray, kk: int) -> np.ndarray:
    """Column indices [n, kk] (ascending) of each row's kk largest, lowest-index ties first."""
    n = len(scores)
    thr = -np.partition(-scores, kk - 1, axis=1)[:, kk - 1 : kk]  # k-th largest per row
    above = scores > thr
    need = kk - above.sum(axis=1, keepdims=True)
    ties = scores == thr
    take = above | (ties & (np.cumsum(ties, axis=1) <= need))  # lowest-index ties first
    return np.nonzero(take)[1].reshape(n, kk)
