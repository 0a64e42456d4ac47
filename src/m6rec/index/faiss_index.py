"""Approximate top-k with FAISS (inner product): HNSW, IVF-Flat or IVF-PQ, same protocol as
`ExactIndex`.

All three take new rows without a rebuild (IVF's coarse quantiser, and PQ's codebooks, are
trained once on the vectors given at construction). A changed row is added again under a new
FAISS id and its old id is ignored from then on, so searches over-fetch by the number of
excluded and stale rows and drop them.

Memory: HNSW and IVF-Flat keep each vector once, inside FAISS (``vectors`` reads it back from
there), plus the graph (HNSW: about ``2 * m`` int32 links per row) or one int64 id per row (IVF).
IVF-PQ keeps ``pq_m`` bytes of code per row for the search and re-ranks its ``refine * k``
best candidates exactly against a float32 copy of the vectors, which ``vectors`` also reads.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from pathlib import Path

import numpy as np

from m6rec.index.base import as_matrix

METHODS = ("hnsw", "ivf", "ivfpq")
log = logging.getLogger("m6rec.index")


class _Grow:
    """An append-only array over an over-allocated buffer: amortised O(rows added) per append,
    and readers holding an older view still see a valid prefix."""

    def __init__(self, shape: tuple[int, ...], dtype):
        self.buf = np.zeros((16, *shape), dtype)
        self.n = 0

    def append(self, rows: np.ndarray) -> None:
        n, m = self.n, len(rows)
        if n + m > len(self.buf):
            grown = np.zeros((max(2 * len(self.buf), n + m), *self.buf.shape[1:]), self.buf.dtype)
            grown[:n] = self.buf[:n]
            self.buf = grown
        self.buf[n:n + m] = rows
        self.n = n + m

    @property
    def view(self) -> np.ndarray:
        return self.buf[: self.n]


#: built HNSW graphs a cache folder keeps (the newest by modification time)
CACHE_KEEP = 4


def _cache_path(folder: Path, v: np.ndarray, settings: str) -> Path:
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{settings} {v.shape}".encode())
    h.update(np.ascontiguousarray(v, np.float32).data)
    return folder / f"{h.hexdigest()}.faiss"


def _read_cached(faiss, path: Path, n: int, d: int):
    """The graph at ``path`` if it loads and holds ``n`` rows of dimension ``d``, else None."""
    if not path.is_file():
        return None
    try:
        index = faiss.read_index(str(path))
    except Exception as e:  # noqa: BLE001 - a torn or foreign file: rebuild it
        log.warning("index cache %s does not load (%s): rebuilding it", path.name, e)
        return None
    if not hasattr(index, "hnsw") or index.ntotal != n or index.d != d:
        log.warning("index cache %s does not match the vectors: rebuilding it", path.name)
        return None
    os.utime(path)  # recently used: kept by the pruning below
    return index


def _write_cached(faiss, index, path: Path) -> None:
    """Write atomically (temporary file, then rename), then keep the `CACHE_KEEP` newest."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        faiss.write_index(index, str(tmp))
        os.replace(tmp, path)
        files = sorted(path.parent.glob("*.faiss"), key=lambda p: p.stat().st_mtime)
        for old in files[:-CACHE_KEEP]:
            old.unlink(missing_ok=True)
    except OSError as e:  # a read-only or full disk costs the next start a rebuild, no more
        log.warning("index cache not written (%s)", e)


class FaissIndex:
    """A FAISS index over inner product.

    Parameters
    ----------
    vectors : float32 [n, d]
    method : {"hnsw", "ivf", "ivfpq"}
        ``IndexHNSWFlat``, ``IndexIVFFlat`` or ``IndexIVFPQ`` (with exact re-ranking).
    m : int
        HNSW graph degree.
    ef_search : int, optional
        HNSW search breadth (recall vs speed); default 256, or 384 from 500k rows (recall@10
        >= 0.95 on 1M 64-d text vectors at p99 < 3 ms, `benchmarks/large_index.py`).
    ef_construction : int
        HNSW build breadth.
    nlist : int, optional
        IVF lists; default ``4 * sqrt(n)`` (at least 1, at most n / 39 so each list trains on
        39 points, FAISS's minimum).
    nprobe : int
        IVF lists visited per query.
    pq_m : int, optional
        IVF-PQ sub-quantisers (bytes per row; must divide d); default ``d / 2`` capped at 64.
    refine : int
        IVF-PQ re-ranks ``refine * k`` candidates with the exact vectors.
    threads : int, optional
        FAISS OpenMP threads for build and search (default: FAISS's own choice).
    cache_dir : path, optional
        HNSW only: keep the built graph in this folder, under a hash of the vectors and the
        build settings, and load it from there when the same vectors come again (a restart
        at 10^6 items reads it in seconds instead of building for minutes). A file that does
        not load or does not match is rebuilt; the folder keeps the `CACHE_KEEP` newest files.
    """

    def __init__(self, vectors: np.ndarray, method: str = "hnsw", m: int = 32,
                 ef_search: int | None = None, ef_construction: int = 80, nlist: int | None = None,
                 nprobe: int = 32, pq_m: int | None = None, refine: int = 10,
                 threads: int | None = None, cache_dir: str | Path | None = None):
        import faiss

        if method not in METHODS:
            raise ValueError(f"faiss method {method!r}: choose from {', '.join(METHODS)}")
        v = as_matrix(vectors)
        n, d = v.shape
        self._faiss = faiss
        if threads is not None:
            faiss.omp_set_num_threads(int(threads))
        self.method = method
        self.kind = f"faiss-{method}"
        self.refine = int(refine)
        ip = faiss.METRIC_INNER_PRODUCT
        cached = path = None
        self._d = d
        # HNSW: inner product as a search on the unit sphere (`_lift`): the largest norm,
        # from which every row gets one extra coordinate
        self._scale = None
        if method == "hnsw":
            top = float(np.sqrt((v.astype(np.float64) ** 2).sum(1).max())) if n else 0.0
            self._scale = top if top > 0 else 1.0
        if method == "hnsw":
            path = (None if cache_dir is None or n == 0
                    else _cache_path(Path(cache_dir), v, f"hnsw-lifted m={m} efc={ef_construction}"))
            cached = _read_cached(faiss, path, n, d + 1) if path is not None else None
            index = cached if cached is not None else faiss.IndexHNSWFlat(d + 1, m, ip)
            index.hnsw.efConstruction = ef_construction
            index.hnsw.efSearch = int(ef_search or (384 if n >= 500_000 else 256))
        else:
            if n == 0:
                raise ValueError(f"faiss method {method!r} needs vectors to train on, got none")
            nlist = int(nlist or np.clip(int(4 * np.sqrt(n)), 1, max(1, n // 39)))
            quantizer = faiss.IndexFlatIP(d)
            if method == "ivf":
                index = faiss.IndexIVFFlat(quantizer, d, nlist, ip)
            else:
                pq_m = int(pq_m or min(64, max(1, d // 2)))
                if d % pq_m:
                    raise ValueError(f"pq_m={pq_m} must divide the vector dimension {d}")
                nbits = 8 if n >= 39 * 256 else max(1, int(np.log2(max(2, n // 39))))
                index = faiss.IndexIVFPQ(quantizer, d, nlist, pq_m, nbits, ip)
            index.train(v)
            index.nprobe = min(int(nprobe), nlist)
            if method == "ivf":
                index.make_direct_map()  # `vectors` reads rows back by id
            self._quantizer = quantizer  # keep the Python owner alive with the index
        self._index = index
        self._lock = threading.Lock()
        self._rows = _Grow((), np.int64)  # faiss id -> row
        self._live = _Grow((), np.int64)  # row -> current faiss id
        self._vecs = _Grow((d,), np.float32) if method == "ivfpq" else None
        self._n_stale = 0
        if cached is None:
            self.add(v)
            if method == "hnsw" and path is not None:
                _write_cached(faiss, index, path)
        else:  # the graph already holds the rows, in order
            self._rows.append(np.arange(n, dtype=np.int64))
            self._live.append(np.arange(n, dtype=np.int64))

    def __len__(self) -> int:
        return self._live.n

    def tune(self, ef_search: int | None = None, nprobe: int | None = None,
             refine: int | None = None) -> None:
        """Change the search-time knobs (HNSW ``ef_search``, IVF ``nprobe``, IVF-PQ ``refine``)
        without a rebuild."""
        if ef_search is not None and self.method == "hnsw":
            self._index.hnsw.efSearch = int(ef_search)
        if nprobe is not None and self.method != "hnsw":
            self._index.nprobe = min(int(nprobe), int(self._index.nlist))
        if refine is not None:
            self.refine = int(refine)

    @property
    def dim(self) -> int:
        return self._d

    def _lift(self, v: np.ndarray) -> np.ndarray:
        """HNSW rows [n, d + 1]: ``x / M`` and ``sqrt(1 - |x / M|^2)`` (``M`` the largest norm
        at the build; 0 for a row added later with a larger norm), all on the unit sphere, so
        the query's largest inner products are its nearest neighbours (Bachrach et al. 2014):
        HNSW's graph serves queries from anywhere, not only near the rows. Exact scores come
        back as ``score * M * |q|`` (the query's extra coordinate is 0)."""
        if self._scale is None:
            return v
        x = v / np.float32(self._scale)
        extra = np.sqrt(np.maximum(0.0, 1.0 - (x.astype(np.float64) ** 2).sum(1)))
        return np.ascontiguousarray(np.concatenate([x, extra[:, None].astype(np.float32)], 1))

    def add(self, vectors: np.ndarray) -> np.ndarray:
        v = as_matrix(vectors, self.dim)
        with self._lock:
            n, base = len(self._live.view), int(self._index.ntotal)
            self._index.add(self._lift(v))
            if self._vecs is not None:
                self._vecs.append(v)
            rows = np.arange(n, n + len(v), dtype=np.int64)
            self._rows.append(rows)
            self._live.append(np.arange(base, base + len(v), dtype=np.int64))
        return rows

    def update(self, idx: int, vector: np.ndarray) -> None:
        v = as_matrix(vector, self.dim)
        if not 0 <= idx < len(self):
            raise IndexError(f"row {idx} not in index of {len(self)} rows")
        with self._lock:
            fid = int(self._index.ntotal)
            self._index.add(self._lift(v))
            self._rows.append(np.array([idx], dtype=np.int64))
            if self._vecs is not None:
                self._vecs.buf[idx] = v[0]
            self._live.buf[idx] = fid
            self._n_stale += 1

    def vectors(self, idx: np.ndarray) -> np.ndarray:
        idx = np.asarray(idx, dtype=np.int64)
        if self._vecs is not None:
            return self._vecs.view[idx]
        fids = self._live.view[idx]
        if len(fids) == 0:
            return np.zeros((0, self.dim), np.float32)
        out = self._index.reconstruct_batch(fids)
        if self._scale is not None:
            out = np.ascontiguousarray(out[:, :self._d] * np.float32(self._scale))
        return out

    def search(self, queries: np.ndarray, k: int,
               exclude: list[np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
        q = as_matrix(queries, self.dim, "queries")
        n_q = len(q)
        rows_map, live = self._rows.view, self._live.view
        total = len(rows_map)
        n_ex = max((len(e) for e in exclude), default=0) if exclude else 0
        want = k + n_ex + self._n_stale
        fetch = min(total, want * self.refine if self._vecs is not None else want)
        out_ids = np.full((n_q, k), -1, dtype=np.int64)
        out_s = np.full((n_q, k), -np.inf, dtype=np.float32)
        if fetch == 0:
            return out_ids, out_s
        if self._scale is not None:  # the query on the sphere too; scores back to q . x
            qn = np.linalg.norm(q.astype(np.float64), axis=1)
            lifted = np.zeros((n_q, self._d + 1), np.float32)
            lifted[:, :self._d] = q / np.maximum(qn, 1e-30)[:, None].astype(np.float32)
            scores, fids = self._index.search(lifted, fetch)
            scores = (scores * (qn * self._scale)[:, None]).astype(np.float32)
        else:
            scores, fids = self._index.search(q, fetch)
        if self._vecs is not None:  # exact re-ranking of the PQ candidates
            vecs = self._vecs.view
            ok = (fids >= 0) & (fids < total)
            cand = rows_map[np.where(ok, fids, 0)]
            scores = np.where(ok, np.einsum("qd,qcd->qc", q, vecs[cand]), -np.inf)
            order = np.argsort(-scores, axis=1, kind="stable")
            scores = np.take_along_axis(scores, order, 1).astype(np.float32)
            fids = np.where(np.take_along_axis(ok, order, 1), np.take_along_axis(fids, order, 1), -1)
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
