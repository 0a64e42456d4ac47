"""Item vector indexes: exact top-k (default, and the test oracle) and FAISS (HNSW, IVF, IVF-PQ),
one protocol.

`build_index` picks FAISS automatically when the catalogue reaches ``threshold`` rows.
"""

from __future__ import annotations

import numpy as np

from m6rec.index.base import VectorIndex
from m6rec.index.exact import ExactIndex

#: catalogue size from which ``kind="auto"`` uses FAISS HNSW
FAISS_THRESHOLD = 50_000


KINDS = ("auto", "exact", "faiss", "hnsw", "ivf", "ivfpq")


def build_index(vectors: np.ndarray, kind: str = "auto",
                threshold: int = FAISS_THRESHOLD, **params) -> VectorIndex:
    """``kind``: ``auto`` (exact below ``threshold`` rows, FAISS HNSW from there), ``exact``,
    ``faiss`` / ``hnsw`` (FAISS HNSW), ``ivf`` (FAISS IVF-Flat) or ``ivfpq`` (FAISS IVF-PQ with
    exact re-ranking); a ``faiss-`` prefix is accepted. ``params`` go to
    `m6rec.index.faiss_index.FaissIndex` (e.g. ``ef_search``, ``nprobe``; ``cache_dir`` keeps
    a built HNSW graph on disk and is ignored by the other kinds)."""
    if kind == "auto":
        kind = "faiss" if len(vectors) >= threshold else "exact"
    if kind == "exact":
        return ExactIndex(vectors)
    method = kind.removeprefix("faiss-")
    method = "hnsw" if method == "faiss" else method
    if method in ("hnsw", "ivf", "ivfpq"):
        from m6rec.index.faiss_index import FaissIndex

        if method != "hnsw":
            params.pop("cache_dir", None)
        return FaissIndex(vectors, method=method, **params)
    raise ValueError(f"index kind {kind!r}: choose from {', '.join(KINDS)}")


__all__ = ["FAISS_THRESHOLD", "KINDS", "ExactIndex", "VectorIndex", "build_index"]
