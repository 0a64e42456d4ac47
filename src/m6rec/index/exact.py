"""Exact top-k by inner product: the default for small catalogues and the oracle in tests."""

from __future__ import annotations

import threading

import numpy as np

from m6rec.index.base import as_matrix
from m6rec.ranking import topk


class ExactIndex:
    """Brute-force scoring of every row; rows live in an over-allocated buffer, so ``add`` is
    amortised O(rows added) and readers always see a consistent prefix."""

    kind = "exact"

    def __init__(self, vectors: np.ndarray):
        v = as_matrix(vectors)
        self._buf = v.copy()
        self._n = len(v)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return self._n

    @property
    def dim(self) -> int:
        return self._buf.shape[1]

    def add(self, vectors: np.ndarray) -> np.ndarray:
        v = as_matrix(vectors, self.dim)
        with self._lock:
            n, m = self._n, len(v)
            if n + m > len(self._buf):
                grown = np.zeros((max(2 * len(self._buf), n + m, 16), self.dim), np.float32)
                grown[:n] = self._buf[:n]
                grown[n:n + m] = v
                self._buf = grown  # readers holding the old buffer still see a valid prefix
            else:
                self._buf[n:n + m] = v
            self._n = n + m
        return np.arange(n, n + m, dtype=np.int64)

    def update(self, idx: int, vector: np.ndarray) -> None:
        v = as_matrix(vector, self.dim)[0]
        if not 0 <= idx < self._n:
            raise IndexError(f"row {idx} not in index of {self._n} rows")
        with self._lock:
            self._buf[idx] = v

    def vectors(self, idx: np.ndarray) -> np.ndarray:
        return self._buf[: self._n][np.asarray(idx, dtype=np.int64)]

    def search(self, queries: np.ndarray, k: int,
               exclude: list[np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
        q = as_matrix(queries, self.dim, "queries")
        buf, n = self._buf, self._n
        scores = q @ buf[:n].T
        if exclude is not None:
            for row, ex in enumerate(exclude):
                ex = np.asarray(ex, dtype=np.int64)
                scores[row, ex[(ex >= 0) & (ex < n)]] = -np.inf
        return topk(scores, k)
