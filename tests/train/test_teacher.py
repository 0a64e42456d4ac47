"""The m6 EASE teacher in its two forms: dense item x item weights, and each item's k largest
weights (`TopK`) for catalogues whose dense weights do not fit in memory."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from m6rec.data import from_dataframe
from m6rec.data.synthetic import generate
from m6rec.train import teacher
from m6rec.train.teacher import TopK, ease_teacher, fit_teacher


def _data(n_inter: int, n_items: int, seed: int = 0):
    inter, items = generate(n_inter, n_items, seed=seed)
    return from_dataframe(inter, items=items, name="synthetic")


def _windows(n: int, rng: np.random.Generator, b: int = 6, length: int = 5, c: int = 4):
    items = rng.integers(0, n, size=(b, length))
    pads = rng.integers(0, length, size=b)
    mask = np.arange(length)[None] >= pads[:, None]
    items[~mask] = n
    older = rng.integers(-1, n, size=(b, c))
    rows = mask & (rng.random(mask.shape) < 0.8)
    return (torch.as_tensor(items), torch.as_tensor(mask), torch.as_tensor(older),
            torch.as_tensor(rows))


def test_topk_with_every_weight_is_the_dense_teacher():
    ds = _data(4000, 60)
    n = ds.n_items
    dense = fit_teacher(ds)
    full = fit_teacher(ds, k=n)
    assert isinstance(dense, torch.Tensor) and dense.shape == (n + 1, n)
    assert isinstance(full, TopK) and full.index.shape == (n + 1, n)
    assert torch.equal(full.to_dense(), dense)
    items, mask, older, rows = _windows(n, np.random.default_rng(1))
    a = ease_teacher(dense, items, mask, None, rows, 0.3)
    b = ease_teacher(full, items, mask, None, rows, 0.3)
    assert torch.equal(a, b)  # window steps: every weight added once, in the same order
    a = ease_teacher(dense, items, mask, older, rows, 0.3)
    b = ease_teacher(full, items, mask, older, rows, 0.3)
    # the older items' rows: a matmul in one, a scatter in the other (float32 rounding only)
    torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-7)
    assert a.sum(1).sub(0.3).abs().max() < 1e-5


def test_topk_keeps_each_items_largest_weights():
    ds = _data(4000, 60)
    dense = fit_teacher(ds)[:-1].numpy()
    top = fit_teacher(ds, k=5)
    assert top.index.shape == (61, 5) and not top.value[-1].any()
    for i in range(ds.n_items):
        want = np.sort(dense[i])[-5:]
        got = np.sort(top.value[top.row[i]].numpy())
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(dense[i, top.index[top.row[i]].numpy()],
                                      top.value[top.row[i]].numpy())
    sparse = top.to_dense().numpy()
    assert int((sparse != 0).sum(1).max()) <= 5
    items, mask, older, rows = _windows(ds.n_items, np.random.default_rng(2))
    got = ease_teacher(top, items, mask, older, rows, 1.0).numpy()
    want = []  # by hand: the listed items of the history's rows, softmax over the unseen ones
    for b in range(len(items)):
        for t in np.flatnonzero(rows[b].numpy()):
            seen = [o for o in older[b].tolist() if o >= 0] + [
                i for i in items[b, :t + 1].tolist() if i < ds.n_items]
            listed = np.zeros(ds.n_items, bool)
            for i in seen:
                listed[top.index[top.row[i]].numpy()] = True
            z = np.where(listed, sparse[seen].sum(0) / teacher.TEMPERATURE, -np.inf)
            z[seen] = -np.inf
            e = np.exp(z - z.max()) if np.isfinite(z).any() else np.zeros_like(z)
            want.append(e / max(e.sum(), 1e-30))
    np.testing.assert_allclose(got, np.array(want), rtol=1e-4, atol=1e-7)
    assert ((got > 0).sum(1) <= 5 * 9).all()  # at most k items per history item
    with pytest.raises(ValueError, match="k must be"):
        fit_teacher(ds, k=0)


def test_large_catalogue_gets_a_topk_teacher_without_n_squared_memory(caplog):
    """10^5 items: the dense teacher would need ~120 GB; under a 0.15 GB budget the top-k one
    is EASE on the most popular items that fit, k weights each, a few MB in all."""
    ds = _data(200_000, 100_000)
    n = ds.n_items
    assert teacher.dense_bytes(n) > 100 * 1024**3
    with caplog.at_level("INFO", logger="m6rec.models"):
        top = fit_teacher(ds, memory_gb=0.15)
    assert isinstance(top, TopK) and top.n_items == n
    assert any("top-k form" in r.getMessage() for r in caplog.records)
    kept = int((top.row[:-1] < len(top.index) - 1).sum())
    assert 500 < kept < 3000 and top.index.shape == (kept + 1, teacher.TOPK)
    assert top.nbytes() < 12 * (kept + 1) * teacher.TOPK + 8 * (n + 2)  # ~5 MB, not 4 n^2
    popular = np.argsort(-ds.csr().getnnz(axis=0), kind="stable")[:kept]
    assert set(np.flatnonzero(top.row[:-1].numpy() < kept)) == set(popular)
    items, mask, older, rows = _windows(n, np.random.default_rng(3))
    items[mask] = torch.as_tensor(popular[:50])[torch.randint(0, 50, (int(mask.sum()),))]
    p = ease_teacher(top, items, mask, older, rows, 1.0)
    assert p.shape == (int(rows.sum()), n)
    torch.testing.assert_close(p.sum(1), torch.ones(len(p)), rtol=1e-5, atol=1e-5)
    others = np.setdiff1d(np.arange(n), popular)
    assert float(p[:, torch.as_tensor(others)].abs().sum()) == 0.0  # only listed items
    assert int((p > 0).sum(1).max()) <= teacher.TOPK * (5 + 4)


def test_sparse_sum_of_the_older_rows_equals_the_dense_matmul(monkeypatch):
    """Beyond `SPARSE_FROM` items the dense teacher sums the older items' rows by a sparse
    matmul: the same distribution as the dense product's (float32 rounding only), repeated
    older items counted as often as they occur."""
    ds = _data(4000, 60)
    n = ds.n_items
    dense = fit_teacher(ds)
    items, mask, older, rows = _windows(n, np.random.default_rng(2), c=9)
    older[0, :3] = older[0, 3]  # one item four times
    want = ease_teacher(dense, items, mask, older, rows, 0.3)
    monkeypatch.setattr(teacher, "SPARSE_FROM", 1)
    got = ease_teacher(dense, items, mask, older, rows, 0.3)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)
    o = torch.where(older >= 0, older, n)
    by_hand = dense[o].sum(1)
    torch.testing.assert_close(teacher._older_sum(dense, o, n), by_hand, rtol=1e-5, atol=1e-6)
