"""Item vector indexes: exact top-k (default, and the test oracle) and FAISS HNSW, one protocol.

`build_index` picks FAISS automatically when the catalogue reaches ``threshold`` rows.
"""

from __future__ import annotations

import numpy as np

from m6rec.index.base import VectorIndex
from m6rec.index.exact import ExactIndex

#: catalogue size from which ``kind="auto"`` uses FAISS HNSW
FAISS_THRESHOLD = 50_000


def build_index(vectors: np.ndarray, kind: str = "auto",
                threshold: int = FAISS_THRESHOLD) -> VectorIndex:
    """``kind``: ``auto`` (exact below ``threshold`` rows, FAISS HNSW from there), ``exact`` or
    ``faiss``."""
    if kind == "auto":
        kind = "faiss" if len(vectors) >= threshold else "exact"
    if kind == "exact":
        return ExactIndex(vectors)
    if kind in ("faiss", "hnsw", "faiss-hnsw"):
        from m6rec.index.faiss_index import FaissIndex

        return FaissIndex(vectors)
    raise ValueError(f"index kind {kind!r}: choose auto, exact or faiss")


__all__ = ["FAISS_THRESHOLD", "ExactIndex", "VectorIndex", "build_index"]
