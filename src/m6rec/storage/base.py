"""The store interface: events and items, chosen by URL (Gorse's storage design).

An event is acknowledged (``add_events`` returns) only after its transaction is committed, so
every acknowledged event survives a crash of the process. Only this package touches a database.

Change feed: events carry their id and items a sequence number (``seq``, new on every write),
both assigned in commit order (writers are serialised), so a reader that has seen everything up
to an offset reads exactly what is new with ``iter_events(after_id=...)`` and
``item_changes(after=...)``: several service processes on one database follow each other's
writes this way (`m6rec.serve.replication`). `Store.watch` wakes a follower when something
was committed (PostgreSQL: LISTEN/NOTIFY).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True)
class Event:
    """One interaction. ``timestamp`` is unix seconds; ``id`` is set by the store."""

    user_id: str
    item_id: str
    type: str | None = None
    timestamp: float | None = None
    id: int | None = None


@dataclass(frozen=True)
class Item:
    """A catalogue item posted to the service: its id and text fields (title, description, ...);
    ``seq`` (set by the store) is its place in the change feed, new on every write."""

    item_id: str
    fields: dict[str, Any] = field(default_factory=dict)
    updated: float | None = None
    seq: int | None = None


class Watch(ABC):
    """Wakes a follower of the change feed when another connection may have committed."""

    @abstractmethod
    def wait(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds; True when something was committed meanwhile (or the
        watch reconnected and may have missed it: read the feed either way)."""

    def close(self) -> None:  # noqa: B027 - optional
        """Release the watch's connection."""


class Store(ABC):
    """Event log + item table + user profiles. Implementations must be thread-safe."""

    url: str
    #: other processes can open the same database (False for an in-memory SQLite)
    shared: ClassVar[bool] = True
    #: `watch` is pushed by the database (LISTEN/NOTIFY), not polled
    notifies: ClassVar[bool] = False

    @abstractmethod
    def add_events(self, events: Sequence[Event]) -> list[int]:
        """Append events in one transaction; returns their ids once committed."""

    @abstractmethod
    def user_events(self, user_id: str, limit: int | None = None) -> list[Event]:
        """A user's events, oldest first (the newest ``limit`` when given)."""

    @abstractmethod
    def count_events(self) -> int: ...

    @abstractmethod
    def iter_events(self, after_id: int = 0, batch: int = 10_000) -> Iterator[Event]:
        """Every event with ``id > after_id``, in id order."""

    def item_counts(self, after_id: int = 0) -> tuple[dict[str, int], int]:
        """(events per item_id among those with ``id > after_id``, the largest event id seen,
        or ``after_id`` when none): what a reader of the log derives popularity from."""
        counts: dict[str, int] = {}
        last = int(after_id)
        for e in self.iter_events(after_id):
            counts[e.item_id] = counts.get(e.item_id, 0) + 1
            last = max(last, int(e.id or 0))
        return counts, last

    @abstractmethod
    def put_items(self, items: Sequence[Item]) -> list[int]:
        """Insert or replace items (one transaction); returns their new ``seq`` once committed."""

    @abstractmethod
    def item_changes(self, after: int = 0, batch: int = 10_000) -> list[Item]:
        """Items written with ``seq > after``, oldest write first (at most ``batch``); an item
        written twice appears once, as last written."""

    def watch(self) -> Watch:
        """A `Watch` on this database's commits (only stores that notify have one)."""
        raise NotImplementedError(f"{type(self).__name__} has no commit notifications; poll "
                                  "the change feed instead")

    @abstractmethod
    def get_item(self, item_id: str) -> Item | None: ...

    @abstractmethod
    def all_items(self) -> list[Item]: ...

    @abstractmethod
    def put_user(self, user_id: str, profile: dict[str, Any]) -> None: ...

    @abstractmethod
    def get_user(self, user_id: str) -> dict[str, Any] | None: ...

    @abstractmethod
    def ping(self) -> None:
        """Raise when the database cannot be reached."""

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class SQLStore(Store):
    """The read side shared by the SQL backends: the same queries, written once, with the
    driver's parameter marker ``mark`` (``?`` for sqlite3, ``%s`` for psycopg)."""

    mark: ClassVar[str] = "?"
    _EVENT_COLS = "SELECT id, user_id, item_id, type, timestamp FROM events "

    @abstractmethod
    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[tuple]:
        """Rows of one read-only query."""

    def user_events(self, user_id: str, limit: int | None = None) -> list[Event]:
        p = self.mark
        if limit is None:
            rows = self._read(f"{self._EVENT_COLS}WHERE user_id = {p} ORDER BY id", (user_id,))
        else:
            rows = self._read(f"{self._EVENT_COLS}WHERE user_id = {p} ORDER BY id DESC LIMIT {p}",
                              (user_id, int(limit)))
            rows.reverse()
        return [Event(u, i, t, ts, id_) for id_, u, i, t, ts in rows]

    def count_events(self) -> int:
        return int(self._read("SELECT COUNT(*) FROM events")[0][0])

    def iter_events(self, after_id: int = 0, batch: int = 10_000) -> Iterator[Event]:
        p, last = self.mark, int(after_id)
        while True:
            rows = self._read(f"{self._EVENT_COLS}WHERE id > {p} ORDER BY id LIMIT {p}",
                              (last, int(batch)))
            for id_, u, i, t, ts in rows:
                yield Event(u, i, t, ts, id_)
            if len(rows) < batch:
                return
            last = rows[-1][0]

    def item_counts(self, after_id: int = 0) -> tuple[dict[str, int], int]:
        """One aggregate query (10^6 events in well under a second), not a Python loop."""
        rows = self._read(f"SELECT item_id, COUNT(*), MAX(id) FROM events WHERE id > {self.mark} "
                          "GROUP BY item_id", (int(after_id),))
        return ({i: int(n) for i, n, _ in rows},
                max([int(after_id)] + [int(m) for _, _, m in rows]))

    _ITEM_COLS = "SELECT item_id, fields, updated, seq FROM items "

    def get_item(self, item_id: str) -> Item | None:
        rows = self._read(f"{self._ITEM_COLS}WHERE item_id = {self.mark}", (item_id,))
        return Item(rows[0][0], json.loads(rows[0][1]), rows[0][2], rows[0][3]) if rows else None

    def all_items(self) -> list[Item]:
        """Every item, in the order of their last write."""
        rows = self._read(f"{self._ITEM_COLS}ORDER BY seq, item_id")
        return [Item(i, json.loads(f), u, q) for i, f, u, q in rows]

    def item_changes(self, after: int = 0, batch: int = 10_000) -> list[Item]:
        p = self.mark
        rows = self._read(f"{self._ITEM_COLS}WHERE seq > {p} ORDER BY seq LIMIT {p}",
                          (int(after), int(batch)))
        return [Item(i, json.loads(f), u, q) for i, f, u, q in rows]

    def get_user(self, user_id: str) -> dict[str, Any] | None:
        rows = self._read(f"SELECT profile FROM users WHERE user_id = {self.mark}", (user_id,))
        return json.loads(rows[0][0]) if rows else None

    def ping(self) -> None:
        self._read("SELECT 1")


def check_event(e: Event) -> None:
    """Reject what no backend should store (the HTTP layer validates first; this is the floor)."""
    if not isinstance(e.user_id, str) or not e.user_id:
        raise ValueError("event user_id must be a non-empty string")
    if not isinstance(e.item_id, str) or not e.item_id:
        raise ValueError("event item_id must be a non-empty string")
    if e.timestamp is None:
        raise ValueError("event timestamp must be set before storing")
