"""PostgreSQL store (psycopg 3): for several service replicas sharing one event log.

One connection per thread; every write is one transaction, committed before it returns
(PostgreSQL's default ``synchronous_commit=on`` makes the commit durable).

Writers are serialised on a transaction-scoped advisory lock, so event ids and item ``seq``
numbers are assigned in commit order (a reader at offset N never later finds a smaller id
committed), and each write transaction sends ``NOTIFY m6rec_changes`` (delivered at commit,
only if it commits): `PostgresStore.watch` LISTENs for it.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from typing import Any

from m6rec.storage.base import Event, Item, SQLStore, Watch, check_event

CHANNEL = "m6rec_changes"
WRITE_LOCK = 6607  # pg_advisory_xact_lock key every writer of the feed takes

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS events (
        id BIGSERIAL PRIMARY KEY,
        user_id TEXT NOT NULL,
        item_id TEXT NOT NULL,
        type TEXT,
        timestamp DOUBLE PRECISION NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS events_user ON events (user_id, id)",
    """CREATE TABLE IF NOT EXISTS items (
        item_id TEXT PRIMARY KEY,
        fields TEXT NOT NULL,
        updated DOUBLE PRECISION NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS users (
        user_id TEXT PRIMARY KEY,
        profile TEXT NOT NULL)""",
    # the items' change feed (databases written before it: numbered by their last write)
    "ALTER TABLE items ADD COLUMN IF NOT EXISTS seq BIGINT",
    """UPDATE items SET seq = o.n + (SELECT COALESCE(MAX(seq), 0) FROM items) FROM (
        SELECT item_id, row_number() OVER (ORDER BY updated, item_id) AS n FROM items
        WHERE seq IS NULL) AS o WHERE o.item_id = items.item_id""",
    "CREATE INDEX IF NOT EXISTS items_seq ON items (seq)",
]


class PostgresStore(SQLStore):
    mark = "%s"
    notifies = True

    def __init__(self, url: str, connect_timeout: int = 10):
        try:
            import psycopg
        except ImportError as e:  # pragma: no cover - psycopg is a main dependency
            raise RuntimeError("PostgreSQL needs psycopg: pip install 'psycopg[binary]'") from e
        self._psycopg = psycopg
        self.url = url
        self.dsn = "postgresql://" + url.split("://", 1)[1]
        self.connect_timeout = connect_timeout
        self._local = threading.local()
        self._lock = threading.Lock()
        self._conns: list[Any] = []
        self._closed = False
        con = self._conn()
        with con.transaction():
            # concurrent replicas may race to create the tables: serialise on an advisory lock
            con.execute("SELECT pg_advisory_xact_lock(6606)")
            for stmt in SCHEMA:
                con.execute(stmt)

    def _conn(self):
        if self._closed:
            raise RuntimeError(f"store {self.url} is closed")
        con = getattr(self._local, "con", None)
        if con is None or con.closed:
            con = self._psycopg.connect(self.dsn, autocommit=True,
                                        connect_timeout=self.connect_timeout)
            self._local.con = con
            with self._lock:
                self._conns.append(con)
        return con

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[tuple]:
        return self._conn().execute(sql, args).fetchall()

    # -- events ------------------------------------------------------------------------------
    def add_events(self, events: Sequence[Event]) -> list[int]:
        for e in events:
            check_event(e)
        if not events:
            return []
        con = self._conn()
        ids: list[int] = []
        with con.transaction(), con.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
            cur.execute("SELECT pg_notify(%s, 'events')", (CHANNEL,))
            for e in events:
                cur.execute("INSERT INTO events (user_id, item_id, type, timestamp) "
                            "VALUES (%s, %s, %s, %s) RETURNING id",
                            (e.user_id, e.item_id, e.type, float(e.timestamp)))
                ids.append(int(cur.fetchone()[0]))
        return ids

    # -- items and users ---------------------------------------------------------------------
    def put_items(self, items: Sequence[Item]) -> list[int]:
        """Each written item gets the next ``seq``, read and written under the write lock."""
        if not items:
            return []
        now = time.time()
        con = self._conn()
        with con.transaction(), con.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
            cur.execute("SELECT pg_notify(%s, 'items')", (CHANNEL,))
            base = int(cur.execute("SELECT COALESCE(MAX(seq), 0) FROM items").fetchone()[0])
            seqs = list(range(base + 1, base + 1 + len(items)))
            for it, q in zip(items, seqs, strict=True):
                cur.execute("INSERT INTO items (item_id, fields, updated, seq) "
                            "VALUES (%s, %s, %s, %s) ON CONFLICT (item_id) DO UPDATE SET "
                            "fields = EXCLUDED.fields, updated = EXCLUDED.updated, "
                            "seq = EXCLUDED.seq",
                            (it.item_id, json.dumps(it.fields), it.updated or now, q))
        return seqs

    def put_user(self, user_id: str, profile: dict[str, Any]) -> None:
        con = self._conn()
        with con.transaction():
            con.execute("INSERT INTO users (user_id, profile) VALUES (%s, %s) ON CONFLICT "
                        "(user_id) DO UPDATE SET profile = EXCLUDED.profile",
                        (user_id, json.dumps(profile)))

    def watch(self) -> PostgresWatch:
        """A LISTEN connection of its own, checked with a notification to itself."""
        w = PostgresWatch(self)
        w.check()
        return w

    # -- lifecycle ---------------------------------------------------------------------------
    def close(self) -> None:
        self._closed = True
        with self._lock:
            for con in self._conns:
                try:
                    con.close()
                except Exception:  # noqa: BLE001 - closing a broken connection
                    pass
            self._conns.clear()


class PostgresWatch(Watch):
    """``LISTEN m6rec_changes`` on a connection of its own; reconnects when it breaks (and then
    says so, since notifications sent meanwhile are lost: the follower reads the feed)."""

    def __init__(self, store: PostgresStore) -> None:
        self._psycopg, self.dsn = store._psycopg, store.dsn
        self.connect_timeout = store.connect_timeout
        self.reconnects = 0
        self.con: Any = None
        self._connect()

    def _connect(self) -> None:
        con = self._psycopg.connect(self.dsn, autocommit=True,
                                    connect_timeout=self.connect_timeout)
        try:
            con.execute(f"LISTEN {CHANNEL}")
        except Exception:
            con.close()
            raise
        self.con = con

    def check(self, timeout: float = 5.0) -> None:
        """Send a notification and wait for it: a database (or a connection pooler in front
        of it) that cannot deliver notifications fails here, with what to do instead."""
        try:
            self.con.execute(f"NOTIFY {CHANNEL}, 'check'")
            got = any(True for _ in self.con.notifies(timeout=timeout, stop_after=1))
        except self._psycopg.Error as e:
            self.close()
            raise RuntimeError(f"replication by LISTEN/NOTIFY is not possible on this database "
                               f"({type(e).__name__}: {str(e).strip()}); use "
                               "--replication poll") from None
        if not got:
            self.close()
            raise RuntimeError(f"a NOTIFY on this database did not arrive within {timeout:.0f} s "
                               "(a connection pooler in transaction mode?); use "
                               "--replication poll")

    def wait(self, timeout: float) -> bool:
        if self.con is None or self.con.closed:
            try:
                self._connect()
            except self._psycopg.Error:
                time.sleep(min(timeout, 1.0))
                return False
            self.reconnects += 1
            return True
        try:
            got = any(True for _ in self.con.notifies(timeout=timeout, stop_after=1))
            if got:  # one read of the feed covers every notification queued meanwhile
                for _ in self.con.notifies(timeout=0.0):
                    pass
            return got
        except self._psycopg.Error:
            self.close()
            return True

    def close(self) -> None:
        con, self.con = self.con, None
        if con is not None:
            try:
                con.close()
            except Exception:  # noqa: BLE001 - closing a broken connection
                pass
