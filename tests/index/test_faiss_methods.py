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


def test_hnsw_graph_cache_loads_the_same_index_and_rebuilds_a_bad_file(tmp_path, vecs, caplog):
    """``cache_dir``: the first build writes the graph under a hash of the vectors and the
    settings; the same vectors load it (same answers, no build), other vectors or settings get
    their own file, and a torn file is rebuilt with a warning."""
    import faiss

    from m6rec.index import faiss_index

    q = vecs[:20] + 0.01
    built = build_index(vecs, kind="hnsw", cache_dir=tmp_path)
    files = list(tmp_path.glob("*.faiss"))
    assert len(files) == 1
    real = faiss.IndexHNSWFlat
    calls = []

    def counting(*a):
        calls.append(a)
        return real(*a)

    faiss.IndexHNSWFlat = counting
    try:
        loaded = build_index(vecs, kind="hnsw", cache_dir=tmp_path)
        assert not calls  # read from the file, not built
        for a, b in zip(built.search(q, 10), loaded.search(q, 10), strict=True):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(loaded.vectors(np.arange(5)), vecs[:5], rtol=1e-6, atol=1e-6)
        loaded.add(vecs[:1] * 2)  # a cached index grows like a built one
        assert len(loaded) == len(vecs) + 1
        build_index(vecs[1:], kind="hnsw", cache_dir=tmp_path)
        build_index(vecs, kind="hnsw", cache_dir=tmp_path, m=16)
        assert len(calls) == 2 and len(list(tmp_path.glob("*.faiss"))) == 3
    finally:
        faiss.IndexHNSWFlat = real
    files[0].write_bytes(b"torn")
    with caplog.at_level("WARNING", logger="m6rec.index"):
        again = build_index(vecs, kind="hnsw", cache_dir=tmp_path)
    assert any("does not load" in r.getMessage() for r in caplog.records)
    for a, b in zip(built.search(q, 10), again.search(q, 10), strict=True):
        np.testing.assert_array_equal(a, b)
    assert faiss.read_index(str(files[0])).ntotal == len(vecs)  # rewritten whole
    for i in range(faiss_index.CACHE_KEEP + 2):  # the folder keeps only the newest graphs
        build_index(vecs[i + 2:], kind="hnsw", cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.faiss"))) == faiss_index.CACHE_KEEP
    assert build_index(vecs, kind="exact", cache_dir=tmp_path).kind == "exact"


def test_hnsw_answers_queries_far_from_the_rows():
    """Inner product over rows that share a direction and differ in norm (a learned item
    table) with queries from anywhere (user vectors): HNSW searches the rows lifted onto the
    unit sphere, so its top-10 keeps most of the exact one (a plain inner-product graph keeps
    about a tenth here), and the scores it returns are the exact inner products."""
    rng = np.random.default_rng(0)
    n, d = 10000, 32
    base = rng.standard_normal(d).astype(np.float32) * 2
    x = ((base + rng.standard_normal((n, d)).astype(np.float32) * 0.5)
         * rng.uniform(0.5, 1.5, (n, 1)).astype(np.float32))
    q = rng.standard_normal((100, d)).astype(np.float32) * 10
    exact = np.argsort(-(q @ x.T), axis=1)[:, :10]
    index = build_index(x, kind="hnsw")
    ids, scores = index.search(q, 10)
    assert _recall(ids, exact) >= 0.8
    want = np.einsum("qd,qkd->qk", q, x[ids])
    np.testing.assert_allclose(scores, want, rtol=1e-4, atol=1e-3)
    index.add(x[:1] * 3)  # a row longer than any at the build is still found and scored
    ids, scores = index.search(x[:1] * 3, 1)
    assert ids[0, 0] == n and scores[0, 0] == pytest.approx(float((x[0] * 3) @ (x[0] * 3)),
                                                            rel=1e-4)
