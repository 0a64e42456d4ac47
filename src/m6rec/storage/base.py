"""The store interface: events and items, chosen by URL (Gorse's storage design).

An event is acknowledged (``add_events`` returns) only after its transaction is committed, so
every acknowledged event survives a crash of the process. Only this package touches a database.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any


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


def check_event(e: Event) -> None:
    """Reject what no backend should store (the HTTP layer validates first; this is the floor)."""
    if not isinstance(e.user_id, str) or not e.user_id:
        raise ValueError("event user_id must be a non-empty string")
    if not isinstance(e.item_id, str) or not e.item_id:
        raise ValueError("event item_id must be a non-empty string")
    if e.timestamp is None:
        raise ValueError("event timestamp must be set before storing")
