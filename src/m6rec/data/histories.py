"""A batch of users' behaviour sequences: the one input every model's ``recommend`` reads."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp


@dataclass(frozen=True, eq=False)
class Histories:
    """Users' interactions in chronological order, packed like a CSR matrix.

    Parameters
    ----------
    indptr : int64 [n + 1]
        Row ``u`` holds ``items[indptr[u]:indptr[u + 1]]``, oldest first.
    items : int64 [nnz]
        Item indices.
    users : int64 [n]
        User index of each row in the training data, or -1 for a user the model never saw.
    timestamps : float64 [nnz] or None
        Unix seconds (NaN where unknown).
    ratings : float32 [nnz] or None
    events : int64 [nnz] or None
        Event-type codes (index into the dataset's event vocabulary).
    """

    indptr: np.ndarray
    items: np.ndarray
    users: np.ndarray
    timestamps: np.ndarray | None = None
    ratings: np.ndarray | None = None
    events: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.indptr) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.indptr)

    def row(self, u: int) -> np.ndarray:
        return self.items[self.indptr[u] : self.indptr[u + 1]]

    def csr(self, n_items: int) -> sp.csr_matrix:
        """Binary user-item matrix [n, n_items] (repeats counted once)."""
        data = np.ones(len(self.items), dtype=np.float32)
        m = sp.csr_matrix((data, self.items, self.indptr), shape=(len(self), n_items))
        m.sum_duplicates()
        m.data[:] = 1.0
        return m

    def take(self, rows: np.ndarray | slice) -> Histories:
        """A sub-batch of rows (in the given order)."""
        idx = np.arange(len(self))[rows]
        starts, ends = self.indptr[idx], self.indptr[idx + 1]
        lengths = ends - starts
        indptr = np.zeros(len(idx) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        flat = _ranges(starts, lengths)

        def pick(a):
            return None if a is None else a[flat]

        return Histories(indptr, self.items[flat], self.users[idx], pick(self.timestamps),
                         pick(self.ratings), pick(self.events))

    def last(self, n: int) -> Histories:
        """Keep only each row's ``n`` most recent interactions."""
        lengths = np.minimum(self.lengths, n)
        starts = self.indptr[1:] - lengths
        indptr = np.zeros(len(self) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        flat = _ranges(starts, lengths)

        def pick(a):
            return None if a is None else a[flat]

        return Histories(indptr, self.items[flat], self.users, pick(self.timestamps),
                         pick(self.ratings), pick(self.events))

    @classmethod
    def from_lists(cls, rows: list[list[int]], users: list[int] | None = None) -> Histories:
        """Build from Python lists of item indices (oldest first); users default to -1."""
        lengths = np.array([len(r) for r in rows], dtype=np.int64)
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        items = np.fromiter((i for r in rows for i in r), dtype=np.int64, count=int(indptr[-1]))
        u = np.full(len(rows), -1, dtype=np.int64) if users is None else np.asarray(users, np.int64)
        return cls(indptr, items, u)


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenate ``arange(s, s + l)`` for every (s, l), vectorised."""
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    offsets = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
    return np.arange(total, dtype=np.int64) + offsets
