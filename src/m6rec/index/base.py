"""The vector index protocol: maximum inner-product top-k over item vectors, growing in place.

Rows are item indices (0..n-1). ``add`` appends rows and ``update`` replaces one, neither
rebuilding the index; ``search`` excludes per-query item sets and pads with -1 / -inf like
`m6rec.ranking.topk`.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class VectorIndex(Protocol):
    kind: str

    def __len__(self) -> int: ...

    @property
    def dim(self) -> int: ...

    def add(self, vectors: np.ndarray) -> np.ndarray:
        """Append rows [m, dim]; returns their indices."""

    def update(self, idx: int, vector: np.ndarray) -> None:
        """Replace row ``idx``."""

    def vectors(self, idx: np.ndarray) -> np.ndarray:
        """Rows [len(idx), dim]."""

    def search(self, queries: np.ndarray, k: int,
               exclude: list[np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k rows by inner product for each query [n, dim] -> (ids [n, k], scores [n, k])."""


def as_matrix(x: np.ndarray, dim: int | None = None, what: str = "vectors") -> np.ndarray:
    a = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2 or (dim is not None and a.shape[1] != dim):
        raise ValueError(f"{what}: expected shape [n, {dim or 'd'}], got {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{what}: holds NaN or infinite values")
    return a
