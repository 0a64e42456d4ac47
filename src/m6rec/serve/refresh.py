"""Recompute a user's cached encodings when their history changes, off the request path.

A new event changes a user's history, so their cached user vector and leave-one-out vectors
(`m6rec.serve.user_cache`) no longer match and the next request would encode them again,
inside the micro-batch that answers everyone else. `Refresher` does that work right after the
event is applied instead: a background thread (at a lower scheduling priority where the
system allows it) re-encodes, in batches, the users whose entries were cached, under the
keys their next request computes. A request that arrives first computes the value itself as
before, so a refresh only ever saves work; what is cached is exactly what the request would
compute (same history, same key).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable

log = logging.getLogger(__name__)

#: most users re-encoded in one batch
BATCH = 32
#: nice increment of the refresh thread (Linux: per thread)
NICE = 10


class Refresher:
    """A thread that calls ``refresh(user_ids)`` for users touched by new events.

    Parameters
    ----------
    refresh : re-encodes the given users (ids as stored: pseudonyms when configured)
    batch : most users per call
    """

    def __init__(self, refresh: Callable[[list[str]], None], batch: int = BATCH) -> None:
        self._refresh, self.batch = refresh, int(batch)
        self._pending: dict[str, None] = {}  # insertion-ordered set
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.refreshed = 0  # users re-encoded so far
        self._busy = False

    def touch(self, user_ids: Iterable[str]) -> None:
        """Queue users whose history just changed (each once until it is refreshed)."""
        with self._cond:
            if self._closed:
                return
            for u in user_ids:
                self._pending[u] = None
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="m6rec-refresh",
                                                daemon=True)
                self._thread.start()
            self._cond.notify()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until nothing is queued or being refreshed (tests, benchmarks)."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._pending and not self._busy, timeout)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._pending.clear()
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(),
                           min(19, os.getpriority(os.PRIO_PROCESS, 0) + NICE))
        except (AttributeError, OSError):  # not Linux, or not allowed: same priority
            pass
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending or self._closed)
                if self._closed:
                    return
                users = list(self._pending)[: self.batch]
                for u in users:
                    del self._pending[u]
                self._busy = True
            try:
                self._refresh(users)
                self.refreshed += len(users)
            except Exception:  # a refresh only saves work: the request path recomputes
                log.exception("refreshing the cached encodings of %d users failed", len(users))
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
