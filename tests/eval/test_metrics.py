"""Tests for m6rec.eval.metrics: hand-computed cases, a loop reference and invariants."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from m6rec.eval.metrics import (
    auc,
    f1_at_k,
    hit_at_k,
    hits_matrix,
    intra_list_diversity,
    item_coverage,
    mae,
    mrr_at_k,
    ndcg_at_k,
    novelty,
    precision_at_k,
    ranking_metrics,
    recall_at_k,
    rmse,
)

METRICS = ("recall", "ndcg", "mrr", "hit", "precision", "f1")
SETTINGS = settings(max_examples=100, deadline=None)


def csr(rows: list[set[int] | list[int]], n_items: int) -> sp.csr_matrix:
    r = [u for u, items in enumerate(rows) for _ in items]
    c = [i for items in rows for i in items]
    return sp.csr_matrix((np.ones(len(c)), (r, c)), shape=(len(rows), n_items))


def ref_metrics(ranked: np.ndarray, target_sets: list[set[int]], k: int) -> dict[str, list[float]]:
    """Plain-Python per-user reference (RecBole definitions), users with targets only."""
    out: dict[str, list[float]] = {m: [] for m in METRICS}
    for row, tset in zip(ranked, target_sets, strict=True):
        if not tset:
            continue
        top = [int(i) for i in row[:k]]
        hit = [i >= 0 and i in tset for i in top]
        n_hit = sum(hit)
        rec, prec = n_hit / len(tset), n_hit / k
        out["recall"].append(rec)
        out["precision"].append(prec)
        out["hit"].append(1.0 if n_hit else 0.0)
        first = next((r for r, h in enumerate(hit) if h), None)
        out["mrr"].append(0.0 if first is None else 1.0 / (first + 1))
        dcg = sum(1.0 / math.log2(r + 2) for r, h in enumerate(hit) if h)
        idcg = sum(1.0 / math.log2(r + 2) for r in range(min(len(tset), k)))
        out["ndcg"].append(dcg / idcg)
        out["f1"].append(0.0 if rec + prec == 0 else 2 * rec * prec / (rec + prec))
    return out


# ---------------------------------------------------------------------------------------
# strategies
# ---------------------------------------------------------------------------------------


@st.composite
def problems(draw, min_users: int = 1, max_users: int = 6, max_items: int = 10, pad: bool = True):
    """A ranking problem: ranked [n, K] without repeats (maybe -1 padded), target sets, K."""
    n_items = draw(st.integers(1, max_items))
    n_users = draw(st.integers(min_users, max_users))
    width = draw(st.integers(1, n_items))
    ranked = np.full((n_users, width), -1, dtype=np.int64)
    target_sets: list[set[int]] = []
    for u in range(n_users):
        perm = draw(st.permutations(range(n_items)))
        n_real = draw(st.integers(0, width)) if pad else width
        ranked[u, :n_real] = perm[:n_real]
        target_sets.append(draw(st.sets(st.integers(0, n_items - 1), max_size=n_items)))
    return ranked, target_sets, n_items


# ---------------------------------------------------------------------------------------
# hits_matrix
# ---------------------------------------------------------------------------------------


def test_hits_matrix_basic_and_padding():
    ranked = np.array([[5, 3, 1], [0, -1, -1], [2, 4, -1]])
    targets = csr([{3}, {0, 1}, set()], n_items=6)
    hits = hits_matrix(ranked, targets)
    assert hits.dtype == bool
    np.testing.assert_array_equal(
        hits, [[False, True, False], [True, False, False], [False, False, False]]
    )


def test_hits_matrix_padding_never_hits_even_with_item_zero_or_last():
    # -1 must not alias the previous user's last item (key u*n - 1 == (u-1)*n + n-1).
    ranked = np.array([[-1, -1], [-1, 0]])
    targets = csr([{0, 3}, {3, 0}], n_items=4)
    np.testing.assert_array_equal(hits_matrix(ranked, targets), [[False, False], [False, True]])


def test_hits_matrix_unsorted_duplicate_and_explicit_zero_entries():
    # unsorted indices, a duplicate entry (summed) and an explicit zero (not a target)
    data = np.array([1.0, 1.0, 1.0, 0.0])
    indices = np.array([4, 1, 4, 2])
    indptr = np.array([0, 4])
    t = sp.csr_matrix((data, indices, indptr), shape=(1, 5))
    hits = hits_matrix(np.array([[2, 4, 1, 0]]), t)
    np.testing.assert_array_equal(hits, [[False, True, True, False]])
    assert ranking_metrics(np.array([[2, 4, 1, 0]]), t, ks=(4,), metrics=("recall",)) == {
        "recall@4": 1.0
    }


def test_hits_matrix_validation():
    t = csr([{1}], n_items=3)
    with pytest.raises(ValueError, match="rows"):
        hits_matrix(np.array([[1], [2]]), t)
    with pytest.raises(ValueError, match="only 3 items"):
        hits_matrix(np.array([[3]]), t)
    with pytest.raises(ValueError, match=">= 0"):
        hits_matrix(np.array([[-2]]), t)
    with pytest.raises(ValueError, match="repeats"):
        hits_matrix(np.array([[1, 1]]), t)
    with pytest.raises(ValueError, match="2-D"):
        hits_matrix(np.array([1, 2]), t)
    with pytest.raises(ValueError, match="integer"):
        hits_matrix(np.array([[1.0]]), t)
    with pytest.raises(ValueError, match="sparse"):
        hits_matrix(np.array([[1]]), np.array([[0, 1, 0]]))
    # repeated padding is fine
    assert not hits_matrix(np.array([[-1, -1]]), t).any()


# ---------------------------------------------------------------------------------------
# hand-computed per-user metrics
# ---------------------------------------------------------------------------------------


def test_single_target_hit_at_rank_two():
    ranked = np.array([[5, 3, 1]])
    targets = csr([{3}], n_items=6)
    hits = hits_matrix(ranked, targets)
    nt = np.array([1])
    assert ndcg_at_k(hits, nt, 3)[0] == pytest.approx(1.0 / math.log2(3))
    assert mrr_at_k(hits, nt, 3)[0] == pytest.approx(0.5)
    assert recall_at_k(hits, nt, 3)[0] == pytest.approx(1.0)
    assert precision_at_k(hits, nt, 3)[0] == pytest.approx(1.0 / 3)
    assert hit_at_k(hits, nt, 3)[0] == 1.0
    assert f1_at_k(hits, nt, 3)[0] == pytest.approx(2 * (1 / 3) / (1 + 1 / 3))
    # at k=1 the hit is out of reach
    for fn in (ndcg_at_k, mrr_at_k, recall_at_k, precision_at_k, hit_at_k, f1_at_k):
        assert fn(hits, nt, 1)[0] == 0.0
    res = ranking_metrics(ranked, targets, ks=(1, 3))
    assert res["ndcg@3"] == pytest.approx(1.0 / math.log2(3))
    assert res["mrr@3"] == pytest.approx(0.5)
    assert res["hit@1"] == 0.0
    assert list(res) == [f"{m}@{k}" for m in METRICS for k in (1, 3)]


def test_two_targets_one_at_rank_one_one_beyond_k():
    ranked = np.array([[7, 2, 4, 9]])
    targets = csr([{7, 9}], n_items=10)
    res = ranking_metrics(ranked, targets, ks=(3,))
    idcg = 1.0 + 1.0 / math.log2(3)
    assert res["ndcg@3"] == pytest.approx(1.0 / idcg)
    assert res["recall@3"] == pytest.approx(0.5)
    assert res["precision@3"] == pytest.approx(1 / 3)
    assert res["mrr@3"] == 1.0
    assert res["hit@3"] == 1.0
    assert res["f1@3"] == pytest.approx(2 * 0.5 * (1 / 3) / (0.5 + 1 / 3))
    res4 = ranking_metrics(ranked, targets, ks=(4,))
    assert res4["ndcg@4"] == pytest.approx((1.0 + 1.0 / math.log2(5)) / idcg)
    assert res4["recall@4"] == 1.0


def test_idcg_truncated_at_k():
    # 5 targets, k=2, both top slots hit -> perfect ndcg although recall is 2/5
    ranked = np.array([[0, 1, 7]])
    targets = csr([{0, 1, 2, 3, 4}], n_items=8)
    res = ranking_metrics(ranked, targets, ks=(2,))
    assert res["ndcg@2"] == pytest.approx(1.0)
    assert res["recall@2"] == pytest.approx(0.4)
    # hit only at rank 2 of k=2: dcg = 1/log2(3), idcg = 1 + 1/log2(3)
    res = ranking_metrics(np.array([[9, 1]]), csr([{0, 1, 2}], n_items=10), ks=(2,))
    assert res["ndcg@2"] == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))


def test_padding_never_hits_in_ranking_metrics():
    ranked = np.array([[-1, -1, 2]])
    targets = csr([{0, 2}], n_items=3)
    res = ranking_metrics(ranked, targets, ks=(2, 3))
    assert res["hit@2"] == 0.0
    assert res["mrr@3"] == pytest.approx(1 / 3)
    assert res["precision@3"] == pytest.approx(1 / 3)


def test_users_without_targets_are_dropped():
    ranked = np.array([[0, 1], [0, 1], [2, 3]])
    targets = csr([{0}, set(), {9}], n_items=10)
    res = ranking_metrics(ranked, targets, ks=(2,))
    assert res["hit@2"] == pytest.approx(0.5)
    assert res["recall@2"] == pytest.approx(0.5)
    assert res["mrr@2"] == pytest.approx(0.5)
    # per-user functions give 0 for users with no target
    hits = hits_matrix(ranked, targets)
    nt = np.array([1, 0, 1])
    for fn in (ndcg_at_k, mrr_at_k, recall_at_k, precision_at_k, hit_at_k, f1_at_k):
        assert fn(hits, nt, 2)[1] == 0.0
    # even if hits are (inconsistently) marked for a user with zero targets
    forced = np.array([[True, True]])
    for fn in (ndcg_at_k, mrr_at_k, recall_at_k, precision_at_k, hit_at_k, f1_at_k):
        assert fn(forced, np.array([0]), 2)[0] == 0.0


def test_ranking_metrics_validation():
    ranked = np.array([[0, 1]])
    targets = csr([{0}], n_items=3)
    with pytest.raises(ValueError, match="exceeds"):
        ranking_metrics(ranked, targets, ks=(3,))
    with pytest.raises(ValueError, match=">= 1"):
        ranking_metrics(ranked, targets, ks=(0,))
    with pytest.raises(ValueError, match="unknown metric"):
        ranking_metrics(ranked, targets, ks=(1,), metrics=("auc",))
    with pytest.raises(ValueError, match="no user has a target"):
        ranking_metrics(ranked, csr([set()], n_items=3), ks=(1,))
    with pytest.raises(ValueError, match="at least one"):
        ranking_metrics(ranked, targets, ks=())


def test_per_user_validation():
    hits = np.zeros((2, 3), dtype=bool)
    with pytest.raises(ValueError, match="exceeds"):
        ndcg_at_k(hits, np.array([1, 1]), 4)
    with pytest.raises(ValueError, match=">= 1"):
        recall_at_k(hits, np.array([1, 1]), 0)
    with pytest.raises(ValueError, match="n_targets"):
        mrr_at_k(hits, np.array([1, 1, 1]), 2)
    with pytest.raises(ValueError, match="non-negative"):
        hit_at_k(hits, np.array([1, -1]), 2)


def test_accepts_csr_array():
    ranked = np.array([[1, 0]])
    t = sp.csr_array(csr([{0}], n_items=2))
    assert ranking_metrics(ranked, t, ks=(2,), metrics=("mrr",)) == {"mrr@2": 0.5}


# ---------------------------------------------------------------------------------------
# hypothesis: reference and invariants
# ---------------------------------------------------------------------------------------


@SETTINGS
@given(problems(), st.data())
def test_matches_loop_reference_and_bounds(problem, data):
    ranked, tsets, n_items = problem
    if not any(tsets):
        return
    k = data.draw(st.integers(1, ranked.shape[1]))
    targets = csr(tsets, n_items)
    ref = ref_metrics(ranked, tsets, k)
    res = ranking_metrics(ranked, targets, ks=(k,), metrics=METRICS)
    hits = hits_matrix(ranked, targets)
    nt = np.array([len(s) for s in tsets])
    keep = nt > 0
    fns = {
        "recall": recall_at_k,
        "ndcg": ndcg_at_k,
        "mrr": mrr_at_k,
        "hit": hit_at_k,
        "precision": precision_at_k,
        "f1": f1_at_k,
    }
    for m in METRICS:
        per_user = fns[m](hits, nt, k)
        assert per_user.dtype == np.float64 and per_user.shape == (len(tsets),)
        assert np.all(per_user >= 0.0) and np.all(per_user <= 1.0 + 1e-12)
        np.testing.assert_allclose(per_user[keep], ref[m], rtol=1e-12, atol=1e-12)
        assert res[f"{m}@{k}"] == pytest.approx(float(np.mean(ref[m])), abs=1e-12)


@SETTINGS
@given(problems(pad=False), st.data())
def test_perfect_ranking(problem, data):
    ranked, tsets, n_items = problem
    width = ranked.shape[1]
    # put every user's targets first (as many as fit), then the other items
    for u, tset in enumerate(tsets):
        first = sorted(tset)
        rest = [i for i in range(n_items) if i not in tset]
        ranked[u] = (first + rest)[:width]
    if not any(tsets):
        return
    k = data.draw(st.integers(1, width))
    res = ranking_metrics(ranked, csr(tsets, n_items), ks=(k,))
    assert res[f"ndcg@{k}"] == pytest.approx(1.0)
    assert res[f"hit@{k}"] == 1.0
    assert res[f"mrr@{k}"] == 1.0
    if all(len(s) <= k for s in tsets):
        assert res[f"recall@{k}"] == pytest.approx(1.0)


@SETTINGS
@given(problems(), st.randoms(use_true_random=False))
def test_user_permutation_invariance(problem, rnd):
    ranked, tsets, n_items = problem
    if not any(tsets):
        return
    ks = sorted({1, ranked.shape[1]})
    base = ranking_metrics(ranked, csr(tsets, n_items), ks=ks)
    perm = list(range(len(tsets)))
    rnd.shuffle(perm)
    shuffled = ranking_metrics(ranked[perm], csr([tsets[i] for i in perm], n_items), ks=ks)
    assert base.keys() == shuffled.keys()
    for key in base:
        assert shuffled[key] == pytest.approx(base[key], abs=1e-12)


@SETTINGS
@given(problems(), st.data(), st.randoms(use_true_random=False))
def test_within_topk_permutation(problem, data, rnd):
    ranked, tsets, n_items = problem
    if not any(tsets):
        return
    k = data.draw(st.integers(1, ranked.shape[1]))
    targets = csr(tsets, n_items)
    shuffled = ranked.copy()
    for row in shuffled:
        top = list(row[:k])
        rnd.shuffle(top)
        row[:k] = top
    a = ranking_metrics(ranked, targets, ks=(k,))
    b = ranking_metrics(shuffled, targets, ks=(k,))
    for m in ("recall", "precision", "hit", "f1"):
        assert b[f"{m}@{k}"] == pytest.approx(a[f"{m}@{k}"], abs=1e-12)
    for m in ("ndcg", "mrr"):
        assert 0.0 <= b[f"{m}@{k}"] <= 1.0 + 1e-12


def test_within_topk_permutation_changes_ndcg_and_mrr():
    targets = csr([{0}], n_items=3)
    a = ranking_metrics(np.array([[0, 1, 2]]), targets, ks=(3,))
    b = ranking_metrics(np.array([[2, 1, 0]]), targets, ks=(3,))
    assert a["recall@3"] == b["recall@3"] and a["precision@3"] == b["precision@3"]
    assert a["hit@3"] == b["hit@3"]
    assert b["ndcg@3"] < a["ndcg@3"] and b["mrr@3"] < a["mrr@3"]


@SETTINGS
@given(problems())
def test_recall_and_hit_non_decreasing_in_k(problem):
    ranked, tsets, n_items = problem
    hits = hits_matrix(ranked, csr(tsets, n_items))
    nt = np.array([len(s) for s in tsets])
    prev_r = prev_h = None
    for k in range(1, ranked.shape[1] + 1):
        r, h = recall_at_k(hits, nt, k), hit_at_k(hits, nt, k)
        if prev_r is not None:
            assert np.all(r >= prev_r - 1e-12) and np.all(h >= prev_h)
        prev_r, prev_h = r, h


def test_ndcg_not_monotone_in_k_example():
    # documents why only recall/hit are tested for monotonicity
    hits = np.array([[True, False]])
    nt = np.array([2])
    assert ndcg_at_k(hits, nt, 1)[0] == 1.0
    assert ndcg_at_k(hits, nt, 2)[0] < 1.0


def test_vectorised_on_larger_random_input():
    rng = np.random.default_rng(0)
    n_users, n_items, k = 300, 50, 20
    ranked = np.argsort(rng.random((n_users, n_items)), axis=1)[:, :k]
    tsets = [
        set(rng.choice(n_items, size=rng.integers(0, 6), replace=False).tolist())
        for _ in range(n_users)
    ]
    res = ranking_metrics(ranked, csr(tsets, n_items), ks=(5, 20))
    for kk in (5, 20):
        ref = ref_metrics(ranked, tsets, kk)
        for m in METRICS:
            assert res[f"{m}@{kk}"] == pytest.approx(float(np.mean(ref[m])), abs=1e-12)


# ---------------------------------------------------------------------------------------
# auc
# ---------------------------------------------------------------------------------------


def brute_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    vals = []
    for s, y in zip(np.atleast_2d(scores), np.atleast_2d(labels), strict=True):
        pos, neg = s[y], s[~y]
        if len(pos) == 0 or len(neg) == 0:
            continue
        tot = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
        vals.append(tot / (len(pos) * len(neg)))
    return float(np.mean(vals))


def test_auc_hand_cases():
    labels = np.array([True, True, False, False])
    assert auc(np.array([0.9, 0.8, 0.1, 0.2]), labels) == 1.0
    assert auc(np.array([0.1, 0.2, 0.9, 0.8]), labels) == 0.0
    assert auc(np.zeros(4), labels) == 0.5
    assert auc(np.array([0.9, 0.3, 0.5, 0.2]), labels) == pytest.approx(0.75)


def test_auc_skips_single_class_rows():
    scores = np.array([[0.9, 0.1, 0.5], [0.3, 0.2, 0.1], [0.1, 0.2, 0.3]])
    labels = np.array([[True, False, False], [True, True, True], [False, False, False]])
    assert auc(scores, labels) == 1.0
    with pytest.raises(ValueError, match="both"):
        auc(scores[1:], labels[1:])


def test_auc_validation():
    with pytest.raises(ValueError, match="same shape"):
        auc(np.zeros((2, 3)), np.zeros((2, 2), dtype=bool))
    with pytest.raises(ValueError, match="finite"):
        auc(np.array([np.nan, 1.0]), np.array([True, False]))
    with pytest.raises(ValueError, match="empty"):
        auc(np.zeros((0, 3)), np.zeros((0, 3), dtype=bool))


@SETTINGS
@given(
    st.integers(1, 4),
    st.integers(2, 7),
    st.randoms(use_true_random=False),
)
def test_auc_matches_brute_force(n, m, rnd):
    rng = np.random.default_rng(rnd.getrandbits(32))
    scores = rng.integers(0, 4, size=(n, m)).astype(float)  # coarse values -> many ties
    labels = rng.random((n, m)) < 0.5
    labels[0, 0], labels[0, 1] = True, False  # at least one valid row
    assert auc(scores, labels) == pytest.approx(brute_auc(scores, labels), abs=1e-12)
    assert auc(scores[0], labels[0]) == pytest.approx(brute_auc(scores[0], labels[0]), abs=1e-12)


# ---------------------------------------------------------------------------------------
# beyond-accuracy
# ---------------------------------------------------------------------------------------


def test_item_coverage():
    ranked = np.array([[0, 1, 2], [1, 3, -1], [-1, -1, -1]])
    assert item_coverage(ranked, n_items=10, k=3) == pytest.approx(0.4)
    assert item_coverage(ranked, n_items=10, k=1) == pytest.approx(0.2)
    assert item_coverage(np.full((2, 2), -1), n_items=5, k=2) == 0.0
    with pytest.raises(ValueError, match="exceeds"):
        item_coverage(ranked, n_items=10, k=4)
    with pytest.raises(ValueError, match="only 3 items"):
        item_coverage(ranked, n_items=3, k=3)


def test_intra_list_diversity_hand_cases():
    onehot = np.eye(4)
    # orthogonal items -> 1
    assert intra_list_diversity(np.array([[0, 1, 2, 3]]), onehot, k=4) == pytest.approx(1.0)
    # identical vectors -> 0
    same = np.array([[1.0, 2.0], [2.0, 4.0], [0.5, 1.0]])  # parallel, different norms
    assert intra_list_diversity(np.array([[0, 1, 2]]), same, k=3) == pytest.approx(0.0, abs=1e-12)
    # 45 degrees between two items: 1 - cos = 1 - 1/sqrt(2)
    v = np.array([[1.0, 0.0], [1.0, 1.0]])
    assert intra_list_diversity(np.array([[0, 1]]), v, k=2) == pytest.approx(1 - 1 / math.sqrt(2))
    # mean over lists; padding pairs left out; single-item lists skipped
    ranked = np.array([[0, 1, -1], [0, 2, 1], [3, -1, -1]])
    cats = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    # list 0: one pair, cos 0 -> 1; list 1: items 0,2,1: cos(0,2)=1, others 0 -> 1 - 1/3
    expected = (1.0 + (1 - 1 / 3)) / 2
    assert intra_list_diversity(ranked, cats, k=3) == pytest.approx(expected)
    # sparse features give the same answer
    assert intra_list_diversity(ranked, sp.csr_matrix(cats), k=3) == pytest.approx(expected)


def test_intra_list_diversity_zero_rows_and_chunking():
    v = np.array([[0.0, 0.0], [1.0, 0.0]])
    assert intra_list_diversity(np.array([[0, 1]]), v, k=2) == pytest.approx(1.0)
    # more users than one chunk, against a direct k x k computation
    rng = np.random.default_rng(1)
    n_items, d, k = 40, 6, 5
    vec = rng.random((n_items, d))
    ranked = np.argsort(rng.random((2500, n_items)), axis=1)[:, :k]
    unit = vec / np.linalg.norm(vec, axis=1, keepdims=True)
    g = unit[ranked]
    sims = np.einsum("bkd,bjd->bkj", g, g)
    iu = np.triu_indices(k, 1)
    expected = float(np.mean(1 - sims[:, iu[0], iu[1]].mean(axis=1)))
    assert intra_list_diversity(ranked, vec, k=k) == pytest.approx(expected, abs=1e-10)


def test_intra_list_diversity_validation():
    with pytest.raises(ValueError, match="k >= 2"):
        intra_list_diversity(np.array([[0, 1]]), np.eye(2), k=1)
    with pytest.raises(ValueError, match="2-D"):
        intra_list_diversity(np.array([[0, 1]]), np.ones(2), k=2)
    with pytest.raises(ValueError, match="two or more"):
        intra_list_diversity(np.array([[0, -1]]), np.eye(2), k=2)


def test_novelty():
    counts = np.array([8, 4, 0, 1])
    ranked = np.array([[0, 1], [2, -1]])
    # -log2(8/8)=0, -log2(4/8)=1, -log2(1/8)=3 (count 0 clipped to 1)
    assert novelty(ranked, counts, n_users=8, k=2) == pytest.approx((0 + 1 + 3) / 3)
    assert novelty(ranked, counts, n_users=8, k=1) == pytest.approx(1.5)
    with pytest.raises(ValueError, match="n_users"):
        novelty(ranked, counts, n_users=0, k=1)
    with pytest.raises(ValueError, match="no items"):
        novelty(np.array([[-1]]), counts, n_users=8, k=1)
    with pytest.raises(ValueError, match="only 4 items"):
        novelty(np.array([[4]]), counts, n_users=8, k=1)


# ---------------------------------------------------------------------------------------
# rating errors
# ---------------------------------------------------------------------------------------


def test_rmse_mae():
    pred = np.array([1.0, 2.0, 3.0, 4.0])
    true = np.array([1.0, 3.0, 1.0, 4.0])
    assert rmse(pred, true) == pytest.approx(math.sqrt((0 + 1 + 4 + 0) / 4))
    assert mae(pred, true) == pytest.approx(0.75)
    assert rmse(true, true) == 0.0 and mae(true, true) == 0.0
    for fn in (rmse, mae):
        with pytest.raises(ValueError, match="same shape"):
            fn(pred, true[:3])
        with pytest.raises(ValueError, match="empty"):
            fn(np.array([]), np.array([]))
