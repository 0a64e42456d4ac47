"""PostgreSQL store (psycopg 3): for several service replicas sharing one event log.

One connection per thread; every write is one transaction, committed before it returns
(PostgreSQL's default ``synchronous_commit=on`` makes the commit durable).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from typing import Any

from m6rec.storage.base import Event, Item, SQLStore, check_event

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
]


class PostgresStore(SQLStore):
    mark = "%s"

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
            for e in events:
                cur.execute("INSERT INTO events (user_id, item_id, type, timestamp) "
                            "VALUES (%s, %s, %s, %s) RETURNING id",
                            (e.user_id, e.item_id, e.type, float(e.timestamp)))
                ids.append(int(cur.fetchone()[0]))
        return ids

    # -- items and users ---------------------------------------------------------------------
    def put_items(self, items: Sequence[Item]) -> None:
        now = time.time()
        con = self._conn()
        with con.transaction(), con.cursor() as cur:
            for it in items:
                cur.execute("INSERT INTO items (item_id, fields, updated) VALUES (%s, %s, %s) "
                            "ON CONFLICT (item_id) DO UPDATE SET fields = EXCLUDED.fields, "
                            "updated = EXCLUDED.updated",
                            (it.item_id, json.dumps(it.fields), it.updated or now))

    def put_user(self, user_id: str, profile: dict[str, Any]) -> None:
        con = self._conn()
        with con.transaction():
            con.execute("INSERT INTO users (user_id, profile) VALUES (%s, %s) ON CONFLICT "
                        "(user_id) DO UPDATE SET profile = EXCLUDED.profile",
                        (user_id, json.dumps(profile)))

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
