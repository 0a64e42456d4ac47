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
        thr = -np.partition(-scores, kk - 1, axis=1)[:, kk - 1 : kk]  # k-th largest per row
        above = scores > thr
        need = kk - above.sum(axis=1, keepdims=True)
        ties = scores == thr
        take = above | (ties & (np.cumsum(ties, axis=1) <= need))  # lowest-index ties first
        part = np.nonzero(take)[1].reshape(n, kk)
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
