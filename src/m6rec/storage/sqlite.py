"""SQLite store: one file, WAL journal, ``synchronous=FULL`` (a commit is on disk when it returns).

One connection per thread (the service answers from a thread pool); writers take the database
lock with ``BEGIN IMMEDIATE`` and wait up to ``busy_timeout`` for each other, also across
processes. So event ids and item ``seq`` numbers are assigned in commit order, and processes on
one machine sharing the file follow each other by polling the change feed (SQLite cannot push a
notification to another process).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from m6rec.storage.base import Event, Item, SQLStore, check_event

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id TEXT NOT NULL,
    item_id TEXT NOT NULL,
    type TEXT,
    timestamp REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS events_user ON events (user_id, id);
CREATE TABLE IF NOT EXISTS items (
    item_id TEXT PRIMARY KEY,
    fields TEXT NOT NULL,
    updated REAL NOT NULL,
    seq INTEGER
);
CREATE TABLE IF NOT EXISTS users (
    user_id TEXT PRIMARY KEY,
    profile TEXT NOT NULL
);
"""


def sqlite_path(url: str) -> str:
    """``sqlite:///rel.db`` -> ``rel.db``, ``sqlite:////abs.db`` -> ``/abs.db`` (SQLAlchemy's
    convention), ``sqlite://:memory:`` -> ``:memory:``."""
    rest = url[len("sqlite://"):]
    if rest in (":memory:", "/:memory:"):
        return ":memory:"
    if not rest.startswith("/"):
        raise ValueError(f"database URL {url!r}: expected sqlite:///PATH")
    path = rest[1:]
    if not path:
        raise ValueError(f"database URL {url!r}: no file path")
    return path


class SQLiteStore(SQLStore):
    mark = "?"

    def __init__(self, url: str, busy_timeout_ms: int = 30_000):
        self.url = url
        self.path = sqlite_path(url)
        self.busy_timeout_ms = busy_timeout_ms
        self._local = threading.local()
        self._lock = threading.Lock()
        self._conns: list[sqlite3.Connection] = []
        self._closed = False
        if self.path == ":memory:":  # one shared connection: each new one would be a new db
            self._shared = self._connect()
        else:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._shared = None
        self._conn().executescript(SCHEMA)
        self._migrate()

    @property
    def shared(self) -> bool:  # type: ignore[override]
        return self.path != ":memory:"

    def _migrate(self) -> None:
        """Give a database written before the change feed its item ``seq`` column (the items
        numbered in the order of their last write)."""
        con = self._conn()
        cols = [r[1] for r in con.execute("PRAGMA table_info(items)").fetchall()]
        if "seq" not in cols:
            try:
                self._write([("ALTER TABLE items ADD COLUMN seq INTEGER", [()])])
            except sqlite3.OperationalError as e:  # another process added it meanwhile
                if "duplicate column" not in str(e):
                    raise
        self._write([("UPDATE items SET seq = (SELECT COUNT(*) FROM items AS o WHERE "
                      "o.updated < items.updated OR (o.updated = items.updated AND "
                      "o.item_id <= items.item_id)) WHERE seq IS NULL", [()]),
                     ("CREATE INDEX IF NOT EXISTS items_seq ON items (seq)", [()])])

    # -- connections -------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                              timeout=self.busy_timeout_ms / 1000)
        con.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_ms)}")
        if self.path != ":memory:":
            mode = con.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise RuntimeError(f"{self.path}: SQLite refused WAL journal mode ({mode})")
        con.execute("PRAGMA synchronous=FULL")
        with self._lock:
            self._conns.append(con)
        return con

    def _conn(self) -> sqlite3.Connection:
        if self._closed:
            raise RuntimeError(f"store {self.url} is closed")
        if self._shared is not None:
            return self._shared
        con = getattr(self._local, "con", None)
        if con is None:
            con = self._local.con = self._connect()
        return con

    def _write(self, sql_rows: list[tuple[str, Sequence[Sequence[Any]]]]) -> list[int]:
        con = self._conn()
        ids: list[int] = []
        guard = self._lock if self._shared is not None else _NoLock()
        with guard:
            con.execute("BEGIN IMMEDIATE")
            try:
                for sql, rows in sql_rows:
                    for row in rows:
                        cur = con.execute(sql, row)
                        ids.append(int(cur.lastrowid or 0))
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        return ids

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[tuple]:
        con = self._conn()
        guard = self._lock if self._shared is not None else _NoLock()
        with guard:
            return con.execute(sql, args).fetchall()

    # -- events ------------------------------------------------------------------------------
    def add_events(self, events: Sequence[Event]) -> list[int]:
        for e in events:
            check_event(e)
        if not events:
            return []
        rows = [(e.user_id, e.item_id, e.type, float(e.timestamp)) for e in events]
        return self._write([("INSERT INTO events (user_id, item_id, type, timestamp) "
                             "VALUES (?, ?, ?, ?)", rows)])

    # -- items and users ---------------------------------------------------------------------
    def put_items(self, items: Sequence[Item]) -> list[int]:
        """Each written item gets the next ``seq``, read and written inside the write lock
        (so in commit order)."""
        if not items:
            return []
        now = time.time()
        con = self._conn()
        guard = self._lock if self._shared is not None else _NoLock()
        with guard:
            con.execute("BEGIN IMMEDIATE")
            try:
                base = int(con.execute("SELECT COALESCE(MAX(seq), 0) FROM items").fetchone()[0])
                seqs = list(range(base + 1, base + 1 + len(items)))
                con.executemany(
                    "INSERT INTO items (item_id, fields, updated, seq) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT(item_id) DO UPDATE SET fields = excluded.fields, "
                    "updated = excluded.updated, seq = excluded.seq",
                    [(it.item_id, json.dumps(it.fields), it.updated or now, q)
                     for it, q in zip(items, seqs, strict=True)])
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        return seqs

    def put_user(self, user_id: str, profile: dict[str, Any]) -> None:
        self._write([("INSERT INTO users (user_id, profile) VALUES (?, ?) ON CONFLICT(user_id) "
                      "DO UPDATE SET profile = excluded.profile",
                      [(user_id, json.dumps(profile))])])

    # -- lifecycle ---------------------------------------------------------------------------
    def close(self) -> None:
        self._closed = True
        with self._lock:
            for con in self._conns:
                try:
                    con.close()
                except sqlite3.ProgrammingError:  # closed from another thread already
                    pass
            self._conns.clear()

    def pragmas(self) -> dict[str, Any]:
        """``journal_mode`` and ``synchronous`` as SQLite reports them (for tests and /health)."""
        con = self._conn()
        return {"journal_mode": con.execute("PRAGMA journal_mode").fetchone()[0],
                "synchronous": con.execute("PRAGMA synchronous").fetchone()[0]}


class _NoLock:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc) -> None:
        return None
