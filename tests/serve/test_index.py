"""Exact and FAISS indexes share one protocol; exact is the oracle for FAISS."""

from __future__ import annotations

import numpy as np
import pytest

from m6rec.index import ExactIndex, build_index
from m6rec.ranking import topk


@pytest.fixture
def vecs(rng):
    return rng.standard_normal((500, 16)).astype(np.float32)


def test_exact_matches_brute_force_and_excludes(vecs, rng):
    idx = ExactIndex(vecs)
    q = rng.standard_normal((3, 16)).astype(np.float32)
    ids, s = idx.search(q, 10, exclude=[np.array([]), np.array([5, 7]), np.arange(495)])
    ref_ids, _ = topk(q @ vecs.T, 10)
    assert np.array_equal(ids[0], ref_ids[0])
    assert not set(ids[1]) & {5, 7}
    assert list(ids[2][:5]) == sorted(range(495, 500), key=lambda j: -(q[2] @ vecs[j]))
    assert (ids[2][5:] == -1).all() and np.isneginf(s[2][5:]).all()


def test_add_and_update_without_rebuild(vecs):
    idx = ExactIndex(vecs[:10])
    rows = idx.add(vecs[10:20])
    assert list(rows) == list(range(10, 20)) and len(idx) == 20
    target = np.ones(16, np.float32) * 10
    idx.update(3, target)
    ids, _ = idx.search(target[None], 1)
    assert ids[0, 0] == 3
    with pytest.raises(ValueError, match="shape"):
        idx.add(np.zeros((1, 5)))
    with pytest.raises(ValueError, match="NaN"):
        idx.add(np.full((1, 16), np.nan))


@pytest.mark.parametrize("kind", ["exact", "faiss"])
def test_same_protocol(kind, vecs, rng):
    pytest.importorskip("faiss")
    idx = build_index(vecs, kind=kind)
    q = rng.standard_normal((20, 16)).astype(np.float32)
    ref, _ = topk(q @ vecs.T, 10)
    ids, scores = idx.search(q, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, ref, strict=True)])
    assert recall >= 0.9
    assert (np.diff(scores, axis=1) <= 1e-5).all()
    new = rng.standard_normal((1, 16)).astype(np.float32) * 50
    row = idx.add(new)[0]
    assert row == 500 and idx.search(new, 1)[0][0, 0] == 500
    idx.update(0, new[0] * 2)
    got = idx.search(new, 2)[0][0]
    assert list(got) == [0, 500]
    assert 0 not in idx.search(new, 2, exclude=[np.array([0])])[0][0]
    assert np.allclose(idx.vectors(np.array([0])), new * 2)


def test_auto_picks_faiss_above_threshold(vecs):
    pytest.importorskip("faiss")
    assert build_index(vecs, threshold=1000).kind == "exact"
    assert build_index(vecs, threshold=100).kind == "faiss-hnsw"
    with pytest.raises(ValueError, match="index kind"):
        build_index(vecs, kind="annoy")
