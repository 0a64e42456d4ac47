"""Micro-batching: concurrent requests answered by one call (no FastAPI here).

Callers `submit` a request and get a `concurrent.futures.Future`; one worker thread takes
whatever is queued (at most ``max_batch``) and answers it with one ``fn(list)`` call. Nothing
waits for a batch to fill: a lone request is answered at once, and under load the requests that
arrive while a batch is being computed form the next one (the batch size follows the load).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

log = logging.getLogger("m6rec.serve")
_STOP = object()


class BatcherClosed(RuntimeError):
    """The batcher takes no more requests (its engine was swapped out or shut down)."""


class MicroBatcher:
    """One worker thread answering queued requests in batches.

    Parameters
    ----------
    fn : answers a list of requests with a list of the same length, each slot a result or an
        ``Exception`` instance (that request's error)
    max_batch : most requests per call
    """

    def __init__(self, fn: Callable[[list[Any]], list[Any]], max_batch: int = 64,
                 name: str = "m6rec-batcher"):
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.fn, self.max_batch = fn, max_batch
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._closed = False
        self.batches = 0
        self.requests = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, request: Any) -> Future:
        fut: Future = Future()
        with self._lock:
            if self._closed:
                raise BatcherClosed("batcher is closed")
            self._q.put((request, fut))
        return fut

    def close(self, timeout: float | None = 30.0) -> None:
        """Answer what is queued, then stop the worker."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._q.put(_STOP)
        self._thread.join(timeout)

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._q.get()
            if first is _STOP:
                return
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    nxt = self._q.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stop = True
                    break
                batch.append(nxt)
            self._answer(batch)

    def _answer(self, batch: list[tuple[Any, Future]]) -> None:
        live = [(r, f) for r, f in batch if f.set_running_or_notify_cancel()]
        if not live:
            return
        self.batches += 1
        self.requests += len(live)
        try:
            results = self.fn([r for r, _ in live])
            if len(results) != len(live):
                raise RuntimeError(f"batch of {len(live)} answered with {len(results)} results")
        except Exception as e:  # noqa: BLE001 - a failed batch fails each of its requests
            log.exception("batch of %d requests failed", len(live))
            results = [e] * len(live)
        for (_, fut), res in zip(live, results, strict=True):
            if isinstance(res, Exception):
                fut.set_exception(res)
            else:
                fut.set_result(res)
