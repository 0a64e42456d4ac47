"""Every FAISS method (HNSW, IVF-Flat, IVF-PQ) keeps the index protocol, with exact search as
the oracle."""

from __future__ import annotations

import numpy as np
import pytest

from m6rec.index import build_index
from m6rec.ranking import topk

pytest.importorskip("faiss")


@pytest.fixture
def vecs():
    rng = np.random.default_rng(0)
    return rng.standard_normal((2000, 16)).astype(np.float32)


def _recall(ids, ref):
    return np.mean([len(set(a) & set(b)) / ref.shape[1] for a, b in zip(ids, ref, strict=True)])


@pytest.mark.parametrize("kind,params", [
    ("hnsw", {}),
    ("ivf", {"nlist": 16, "nprobe": 8}),
    ("ivfpq", {"nlist": 16, "nprobe": 8, "pq_m": 8, "refine": 20}),
])
def test_protocol_and_recall(kind, params, vecs):
    rng = np.random.default_rng(1)
    idx = build_index(vecs, kind=kind, **params)
    assert idx.kind == f"faiss-{kind}" and len(idx) == 2000 and idx.dim == 16
    q = rng.standard_normal((50, 16)).astype(np.float32)
    ref, ref_s = topk(q @ vecs.T, 10)
    ids, scores = idx.search(q, 10)
    assert _recall(ids, ref) >= 0.9
    assert (np.diff(scores, axis=1) <= 1e-5).all()
    hit = ids == ref  # a returned row's score is its exact inner product
    assert np.allclose(scores[hit], ref_s[hit], atol=1e-4)
    assert np.allclose(idx.vectors(np.array([3, 7])), vecs[[3, 7]])
    new = rng.standard_normal((1, 16)).astype(np.float32) * 50
    assert idx.add(new)[0] == 2000 and idx.search(new, 1)[0][0, 0] == 2000
    idx.update(5, new[0] * 2)
    assert list(idx.search(new, 2)[0][0]) == [5, 2000]
    assert 5 not in idx.search(new, 2, exclude=[np.array([5])])[0][0]
    assert np.allclose(idx.vectors(np.array([5])), new * 2)


def test_bad_method_and_pq_shape(vecs):
    with pytest.raises(ValueError, match="index kind"):
        build_index(vecs, kind="lsh")
    with pytest.raises(ValueError, match="must divide"):
        build_index(vecs, kind="ivfpq", pq_m=5)
    with pytest.raises(ValueError, match="needs vectors"):
        build_index(np.zeros((0, 16), np.float32), kind="ivf")
