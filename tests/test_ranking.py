"""Row-wise top-k against the definition: sort each row by (score desc, item index asc)."""

from __future__ import annotations

import numpy as np
import pytest

from m6rec.ranking import topk


def _by_sorting(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    n, m = scores.shape
    ids = np.full((n, k), -1, np.int64)
    vals = np.full((n, k), -np.inf, np.float32)
    for r in range(n):
        order = np.lexsort((np.arange(m), -scores[r]))[:k]
        keep = scores[r, order] > -np.inf
        ids[r, : keep.sum()] = order[keep]
        vals[r, : keep.sum()] = scores[r, order[keep]]
    return ids, vals


@pytest.mark.parametrize("levels", [3, 20, 10**6])  # many ties ... almost none
@pytest.mark.parametrize("k", [1, 5, 10, 40, 60])
def test_topk_is_the_sorted_prefix_with_lowest_index_ties_first(levels, k):
    rng = np.random.default_rng(levels + k)
    s = rng.integers(0, levels, size=(50, 40)).astype(np.float32)
    s[rng.random(s.shape) < 0.2] = -np.inf  # excluded items
    s[3] = -np.inf  # a row with nothing eligible
    s[4, :5] = 7.5  # a row whose k-th place is a tie
    ids, vals = topk(s, k)
    want_ids, want_vals = _by_sorting(s, k)
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_array_equal(vals, want_vals)
    # a row's result never depends on the other rows of the batch
    for r in (0, 4, 17):
        one_ids, _ = topk(s[r:r + 1], k)
        np.testing.assert_array_equal(one_ids[0], ids[r])
