"""Event and item stores behind one interface, chosen by URL.

``sqlite:///path/to/file.db`` (default; WAL, ``synchronous=FULL``), ``sqlite://:memory:``, or
``postgresql://user@host:port/db`` (``postgres://`` too). Only this package imports a database
driver.
"""

from __future__ import annotations

from m6rec.storage.base import Event, Item, Store, Watch


def open_store(url: str) -> Store:
    """A store for ``url`` (see the module docstring); tables are created when missing."""
    u = str(url).strip()
    if u.startswith("sqlite://"):
        from m6rec.storage.sqlite import SQLiteStore

        return SQLiteStore(u)
    if u.startswith(("postgresql://", "postgres://")):
        from m6rec.storage.postgres import PostgresStore

        return PostgresStore(u)
    raise ValueError(f"database URL {url!r}: expected sqlite:///PATH or postgresql://...")


__all__ = ["Event", "Item", "Store", "Watch", "open_store"]
