"""Several service processes on one database (no FastAPI here).

Every process keeps in memory what it derives from the store: the posted items (catalogue,
item vectors) and the events per item (popularity). A user's history is read from the store on
every request, so it is shared at once; the rest follows the store's change feed
(`m6rec.storage.base`): events by id, items by ``seq``, both assigned in commit order.

`Follower` reads the feed from the engine's offsets and applies what it finds through the same
engine methods a local write uses (`Engine._apply_item`, `Engine._apply_events`); a `Cursor`
per feed makes each change count once, whichever of the two paths gets to it first: the
offset says what is applied up to there, and the changes applied locally above it (our own
writes, committed before other processes' changes were read) are remembered until the feed
passes them.

When does a follower read the feed?

- ``notify`` (PostgreSQL): when a ``NOTIFY`` of a commit arrives (LISTEN on a connection of
  its own), after that connection is re-established (notifications sent meanwhile are lost;
  the offset catches up), and every ``poll`` seconds in any case (default 0.5 s);
- ``poll`` (SQLite file shared by processes on one machine, or PostgreSQL): every ``poll``
  seconds (default 0.1 s; two indexed reads that usually return nothing);
- ``off``: never (one process owns the store);
- ``auto`` (default): ``notify`` for PostgreSQL, ``poll`` for a SQLite file, ``off`` for an
  in-memory SQLite (private to its process).

``m6rec serve --workers N`` runs N such processes behind one port (`worker_app`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("m6rec.serve")

MODES = ("auto", "notify", "poll", "off")
DEFAULT_POLL = {"notify": 0.5, "poll": 0.1}
WORKER_SETTINGS = "M6REC_WORKER_SETTINGS"  # the settings of `worker_app`, as JSON


@dataclass(frozen=True)
class ReplicationSpec:
    """How an app follows the store: ``mode`` (``notify``, ``poll`` or ``off``) and ``poll``
    (seconds between two reads of the feed when nothing wakes the follower earlier)."""

    mode: str
    poll: float = 0.1

    @property
    def on(self) -> bool:
        return self.mode != "off"

    @classmethod
    def resolve(cls, mode: str | None, db: str, poll: float | None = None,
                workers: int = 1) -> ReplicationSpec:
        """The spec for ``mode`` on the store URL ``db``; a ValueError says what cannot work
        (LISTEN/NOTIFY without PostgreSQL, processes sharing an in-memory database, workers
        that would not see each other's writes)."""
        m = str(mode or "auto").strip().lower()
        if m not in MODES:
            raise ValueError(f"--replication {mode!r}: expected one of {', '.join(MODES)}")
        url = str(db).strip()
        postgres = url.startswith(("postgresql://", "postgres://"))
        memory = url.startswith("sqlite://") and ":memory:" in url
        if m == "auto":
            m = "notify" if postgres else "off" if memory else "poll"
        if m == "notify" and not postgres:
            raise ValueError(f"--replication notify needs PostgreSQL (LISTEN/NOTIFY), not "
                             f"{url.split('://')[0]}://; processes sharing a SQLite file on one "
                             "machine can use --replication poll")
        if m != "off" and memory:
            raise ValueError(f"--replication {m}: an in-memory SQLite database is private to "
                             "its process; use a file (sqlite:///PATH) or PostgreSQL")
        if workers > 1 and m == "off":
            raise ValueError(f"--workers {workers} with --replication off: the workers would "
                             "not see each other's items and events; use --replication auto"
                             + (" and a database file or PostgreSQL" if memory else ""))
        if poll is not None and not poll > 0:
            raise ValueError(f"replication poll must be > 0 seconds, got {poll!r}")
        return cls(m, float(poll if poll is not None else DEFAULT_POLL.get(m, 0.1)))


class Cursor:
    """What has been applied from one feed: every change numbered up to ``offset``, and the
    changes above it applied out of order (``ahead``: number -> what it counted, e.g. the
    event's item id), which a later read of the feed skips.

    ``shared=False`` (one process owns the store): every change is ours and applied once by
    its writer; the offset is the largest number applied (nothing else writes below it).
    """

    def __init__(self, offset: int = 0, shared: bool = False) -> None:
        self.offset = int(offset)
        self.shared = shared
        self.ahead: dict[int, Any] = {}

    def claim(self, n: int, value: Any = None) -> bool:
        """True when change ``n`` is not applied yet (the caller applies it now)."""
        n = int(n)
        if not self.shared:
            self.offset = max(self.offset, n)
            return True
        if n <= self.offset or n in self.ahead:
            return False
        self.ahead[n] = value
        while self.offset + 1 in self.ahead:  # contiguous from the offset: fold it in
            self.offset += 1
            del self.ahead[self.offset]
        return True

    def advance(self, upto: int) -> None:
        """The feed was read up to ``upto``: everything at or below it is applied."""
        if int(upto) <= self.offset:
            return
        self.offset = int(upto)
        self.ahead = {n: v for n, v in self.ahead.items() if n > self.offset}
        while self.offset + 1 in self.ahead:
            self.offset += 1
            del self.ahead[self.offset]

    def copy(self) -> Cursor:
        new = Cursor(self.offset, self.shared)
        new.ahead = dict(self.ahead)
        return new


def catch_up(engine: Any, batch: int = 1000) -> int:
    """Read the store's feed from ``engine``'s offsets and apply what is new (items first: an
    event names an item committed before it). Returns how many changes were applied here."""
    store, applied = engine.store, 0
    while True:
        items = store.item_changes(engine.catalogue.item_cursor.offset, batch)
        for it in items:
            applied += engine._apply_item(it) is not None
        if items:
            engine._advance(items=items[-1].seq)
        if len(items) < batch:
            break
    chunk: list[Any] = []
    for e in store.iter_events(engine.catalogue.event_cursor.offset, batch):
        chunk.append(e)
        if len(chunk) == batch:
            applied += engine._apply_events(chunk)
            engine._advance(events=chunk[-1].id)
            chunk = []
    if chunk:
        applied += engine._apply_events(chunk)
        engine._advance(events=chunk[-1].id)
    return applied


class Follower:
    """The background thread of one app that keeps its engine up to date with the store.

    Parameters
    ----------
    spec : how to follow (`ReplicationSpec`, mode ``notify`` or ``poll``)
    store : the app's store (its `watch` is opened here, in notify mode)
    get_engine : the serving engine now (it changes on a reload or an online update)

    Attributes (read by ``/metrics``)
    ----------
    applied : changes applied from the feed: other processes' writes (and our own when the
        feed reached them before the writing request applied them)
    reads : reads of the feed
    failures : reads that raised (retried on the next wake-up)
    reconnects : times the notification connection was re-established
    last_read : unix time of the newest read of the feed that succeeded
    """

    def __init__(self, spec: ReplicationSpec, store: Any, get_engine: Callable[[], Any]):
        if not spec.on:
            raise ValueError("Follower needs a replication mode other than off")
        self.spec, self.store, self._get_engine = spec, store, get_engine
        self.watch = store.watch() if spec.mode == "notify" else None
        self._stop = threading.Event()
        self._kick = threading.Event()
        self.applied = self.reads = self.failures = 0
        self.last_read = time.time()
        self.last_error = ""
        self._thread = threading.Thread(target=self._run, name="m6rec-replication", daemon=True)
        self._thread.start()

    @property
    def reconnects(self) -> int:
        return getattr(self.watch, "reconnects", 0)

    @property
    def lag_seconds(self) -> float:
        """Seconds since the feed was last read (up to ``poll`` while all is well)."""
        return max(0.0, time.time() - self.last_read)

    def kick(self) -> None:
        """Read the feed now (poll mode; in notify mode a commit wakes the follower)."""
        self._kick.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._kick.set()
        self._thread.join(timeout)

    def step(self) -> int:
        """One read of the feed into the serving engine; returns the changes applied."""
        engine = self._get_engine()
        if engine is None:
            return 0
        t = time.time()
        n = catch_up(engine)
        self.reads += 1
        self.applied += n
        self.last_read = t
        return n

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    self.step()
                except Exception as e:  # noqa: BLE001 - the store may be back next time
                    self.failures += 1
                    self.last_error = f"{type(e).__name__}: {e}"
                    log.warning("replication: reading the change feed failed (%s); retrying",
                                self.last_error)
                    self._stop.wait(min(1.0, 5 * self.spec.poll))
                if self.watch is not None:
                    self.watch.wait(self.spec.poll)
                else:
                    self._kick.wait(self.spec.poll)
                    self._kick.clear()
        finally:
            if self.watch is not None:
                self.watch.close()


def preflight(settings: Any) -> ReplicationSpec:
    """Check before serving that ``settings`` can replicate as asked (a ValueError says why
    not): the mode against the database URL, and in notify mode a LISTEN/NOTIFY round trip on
    the database itself."""
    spec = ReplicationSpec.resolve(settings.replication, settings.db, settings.replication_poll,
                                   settings.workers)
    if spec.mode == "notify":
        from m6rec.storage import open_store

        try:
            with open_store(settings.db) as store:
                store.watch().close()
        except RuntimeError as e:
            raise ValueError(str(e)) from None
    return spec


# -- several workers behind one port -----------------------------------------------------------
def worker_environment(settings: Any) -> dict[str, str]:
    """The environment that hands ``settings`` to each worker process (`worker_app`)."""
    values = {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)}
    return {WORKER_SETTINGS: json.dumps(values, default=str)}


def worker_app():
    """The app of one ``--workers`` process (uvicorn's factory): the settings the command
    line resolved, read back from the environment."""
    from pathlib import Path

    from m6rec.serve.app import create_app
    from m6rec.serve.settings import ServeSettings

    raw = os.environ.get(WORKER_SETTINGS)
    if not raw:
        raise RuntimeError(f"{WORKER_SETTINGS} is not set: start workers with "
                           "`m6rec serve --workers N`")
    values = json.loads(raw)
    values["model_dir"] = Path(values["model_dir"])
    return create_app(ServeSettings(**values))


__all__ = ["Cursor", "Follower", "ReplicationSpec", "catch_up", "preflight", "worker_app"]
