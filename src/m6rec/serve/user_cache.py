"""Per-user caches of what the encoder computed from a history (user vectors, leave-one-out
vectors), kept while the history is unchanged.

A value is stored under the user's id with a key: a digest of everything the encoder read
(`history_key`), so a cached value is exactly what computing again would give, and a new
event (a longer history) or a new item table misses and recomputes.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


def history_key(prefix: bytes, u: int, *arrays: np.ndarray) -> bytes:
    """A 16-byte digest of ``prefix``, a user index and arrays (items, times, event codes)."""
    h = hashlib.blake2b(prefix, digest_size=16)
    h.update(int(u).to_bytes(8, "little", signed=True))
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
        h.update(b"|")
    return h.digest()


class UserCache:
    """Least-recently-used cache: user id -> (key, value), at most ``size`` users (0: off).

    ``hits`` and ``misses`` count the lookups of `get_or_compute`."""

    def __init__(self, size: int) -> None:
        self.size = int(size)
        self._data: OrderedDict[str, tuple[bytes, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, user_id: object) -> bool:
        """Whether a value is cached for ``user_id`` (under any key)."""
        with self._lock:
            return user_id in self._data

    def get(self, user_id: str, key: bytes) -> Any | None:
        """The value cached for ``user_id`` under ``key``, or None."""
        with self._lock:
            hit = self._data.get(user_id)
            if hit is None or hit[0] != key:
                return None
            self._data.move_to_end(user_id)
            return hit[1]

    def put(self, user_id: str, key: bytes, value: Any) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._data[user_id] = (key, value)
            self._data.move_to_end(user_id)
            while len(self._data) > self.size:
                self._data.popitem(last=False)

    def get_or_compute(self, user_ids: Sequence[str], keys: Sequence[bytes],
                       compute: Callable[[list[int]], Sequence[Any]]) -> list[Any]:
        """Values for every user: cached ones, and ``compute(missing positions)`` (one call, in
        the order given) for the rest, which are then cached."""
        out = [self.get(u, k) for u, k in zip(user_ids, keys, strict=True)]
        miss = [x for x, v in enumerate(out) if v is None]
        if miss:
            for x, v in zip(miss, compute(miss), strict=True):
                out[x] = v
                self.put(user_ids[x], keys[x], v)
        self.hits += len(out) - len(miss)
        self.misses += len(miss)
        return out
