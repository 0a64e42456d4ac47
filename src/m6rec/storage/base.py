"""The store interface: events and items, chosen by URL (Gorse's storage design).

An event is acknowledged (``add_events`` returns) only after its transaction is committed, so
every acknowledged event survives a crash of the process. Only this package touches a database.
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
    """A catalogue item posted to the service: its id and text fields (title, description, ...)."""

    item_id: str
    fields: dict[str, Any] = field(default_factory=dict)
    updated: float | None = None


class Store(ABC):
    """Event log + item table + user profiles. Implementations must be thread-safe."""

    url: str

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
    def put_items(self, items: Sequence[Item]) -> None:
        """Insert or replace items (one transaction)."""

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

    def get_item(self, item_id: str) -> Item | None:
        rows = self._read(f"SELECT item_id, fields, updated FROM items WHERE item_id = {self.mark}",
                          (item_id,))
        return Item(rows[0][0], json.loads(rows[0][1]), rows[0][2]) if rows else None

    def all_items(self) -> list[Item]:
        rows = self._read("SELECT item_id, fields, updated FROM items ORDER BY updated, item_id")
        return [Item(i, json.loads(f), u) for i, f, u in rows]

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
