"""Sanity of the classic baselines on the built-in ml-100k: each one, with its default
parameters, beats most-popular on a leave-last-item-out holdout (RecBole's one smoke test per
model), plus reference checks of the parts most easily got wrong."""

from __future__ import annotations

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from m6rec.data.dataset import Dataset
from m6rec.models.knn import ItemKNN
from m6rec.models.mf import ALS
from m6rec.registry import build_model

BASELINES = ["itemknn", "userknn", "ease", "puresvd", "als", "bpr"]


@pytest.fixture(scope="module")
def holdout(ml100k) -> tuple[Dataset, np.ndarray]:
    """Train on all but each user's last interaction; the target is that last item."""
    inter = ml100k.inter
    is_last = inter.groupby("user_idx")["seq"].transform("max") == inter["seq"]
    train = ml100k.with_interactions(inter[~is_last])
    targets = np.full(ml100k.n_users, -1, dtype=np.int64)
    targets[inter.loc[is_last, "user_idx"].to_numpy()] = inter.loc[is_last, "item_idx"].to_numpy()
    assert (targets >= 0).all()
    return train, targets


def _hit_at_10(name: str, train: Dataset, targets: np.ndarray) -> float:
    model = build_model(name).fit(train)
    ids, _ = model.recommend(train.histories(), k=10)
    return float((ids == targets[:, None]).any(axis=1).mean())


@pytest.fixture(scope="module")
def pop_hit(holdout) -> float:
    return _hit_at_10("pop", *holdout)


@pytest.mark.parametrize("name", BASELINES)
def test_beats_pop(name, holdout, pop_hit):
    hit = _hit_at_10(name, *holdout)
    assert hit > pop_hit, f"{name}: hit@10 {hit:.4f} <= pop {pop_hit:.4f}"


def test_itemknn_matches_dense_reference(ml100k):
    """Column j of the similarity keeps j's k largest shrunk cosines (ties may pick any)."""
    k, shrink = 20, 10.0
    model = ItemKNN(k=k, shrink=shrink).fit(ml100k)
    x = ml100k.csr().toarray().astype(np.float64)
    n = np.sqrt(x.sum(axis=0))
    dense = (x.T @ x) / (n[:, None] * n[None, :] + shrink)
    np.fill_diagonal(dense, 0.0)
    expected = -np.sort(-dense, axis=0)[:k]  # the k largest values of each column
    s = model.similarity_.tocsc()
    got = np.zeros_like(expected)
    for j in range(s.shape[1]):  # a test-only loop: the reference, not the code under test
        v = np.sort(s.data[s.indptr[j]:s.indptr[j + 1]])[::-1]
        got[: len(v), j] = v
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)


def test_als_fold_in_matches_implicit(ml100k):
    """The fold-in solves implicit's own user equation (confidence 1 + alpha on positives)."""
    from implicit.cpu.als import AlternatingLeastSquares

    model = ALS(factors=16, iterations=3).fit(ml100k)
    users = np.arange(20)
    with threadpool_limits(1, "blas"):
        ref = AlternatingLeastSquares(factors=16, regularization=model.regularization, alpha=1.0)
    ref.item_factors = model.item_factors_.copy()
    confidence = ml100k.csr()[users] * np.float32(1.0 + model.alpha)
    expected = ref.recalculate_user(users, confidence)
    got = model.user_factors(ml100k.histories(users))
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-4)
