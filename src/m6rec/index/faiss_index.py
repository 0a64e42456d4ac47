"""Approximate top-k with FAISS HNSW (inner product), same protocol as `ExactIndex`.

HNSW takes new rows without a rebuild. A changed row is added again under a new FAISS id and
its old id is ignored from then on (HNSW cannot delete), so searches over-fetch by the number of
excluded and stale rows and drop them.
"""

from __future__ import annotations

import threading

import numpy as np

from m6rec.index.base import as_matrix


class FaissIndex:
    """FAISS ``IndexHNSWFlat`` over inner product.

    Parameters
    ----------
    vectors : float32 [n, d]
    m : int
        HNSW graph degree.
    ef_search, ef_construction : int
        HNSW search / build breadth (recall vs speed).
    """

    kind = "faiss-hnsw"

    def __init__(self, vectors: np.ndarray, m: int = 32, ef_search: int = 128,
                 ef_construction: int = 80):
        import faiss

        v = as_matrix(vectors)
        self._faiss = faiss
        self._index = faiss.IndexHNSWFlat(v.shape[1], m, faiss.METRIC_INNER_PRODUCT)
        self._index.hnsw.efConstruction = ef_construction
        self._index.hnsw.efSearch = ef_search
        self._lock = threading.Lock()
        self._rows = np.zeros(0, dtype=np.int64)  # faiss id -> row
        self._live = np.zeros(0, dtype=np.int64)  # row -> current faiss id
        self._vecs = np.zeros((0, v.shape[1]), np.float32)
        self._n_stale = 0
        self.add(v)

    def __len__(self) -> int:
        return len(self._live)

    @property
    def dim(self) -> int:
        return int(self._index.d)

    def add(self, vectors: np.ndarray) -> np.ndarray:
        v = as_matrix(vectors, self.dim)
        with self._lock:
            n, base = len(self._live), int(self._index.ntotal)
            self._index.add(v)
            rows = np.arange(n, n + len(v), dtype=np.int64)
            self._rows = np.concatenate([self._rows, rows])
            self._live = np.concatenate([self._live, np.arange(base, base + len(v))])
            self._vecs = np.concatenate([self._vecs, v])
        return rows

    def update(self, idx: int, vector: np.ndarray) -> None:
        v = as_matrix(vector, self.dim)
        if not 0 <= idx < len(self._live):
            raise IndexError(f"row {idx} not in index of {len(self._live)} rows")
        with self._lock:
            fid = int(self._index.ntotal)
            self._index.add(v)
            self._rows = np.concatenate([self._rows, [idx]])
            live = self._live.copy()
            live[idx] = fid
            self._live = live
            vecs = self._vecs.copy()
            vecs[idx] = v[0]
            self._vecs = vecs
            self._n_stale += 1

    def vectors(self, idx: np.ndarray) -> np.ndarray:
        return self._vecs[np.asarray(idx, dtype=np.int64)]

    def search(self, queries: np.ndarray, k: int,
               exclude: list[np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
        q = as_matrix(queries, self.dim, "queries")
        n_q = len(q)
        rows_map, live = self._rows, self._live
        total = len(rows_map)
        n_ex = max((len(e) for e in exclude), default=0) if exclude else 0
        fetch = min(total, k + n_ex + self._n_stale)
        out_ids = np.full((n_q, k), -1, dtype=np.int64)
        out_s = np.full((n_q, k), -np.inf, dtype=np.float32)
        if fetch == 0:
            return out_ids, out_s
        scores, fids = self._index.search(q, fetch)
        for r in range(n_q):
            ex = set(np.asarray(exclude[r]).tolist()) if exclude else set()
            got = 0
            for fid, s in zip(fids[r], scores[r], strict=True):
                if fid < 0 or fid >= total:
                    continue
                row = int(rows_map[fid])
                if live[row] != fid or row in ex:
                    continue
                out_ids[r, got], out_s[r, got] = row, s
                got += 1
                if got == k:
                    break
        return out_ids, out_s
