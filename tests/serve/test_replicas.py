"""Two real `m6rec serve` processes on one database: what is posted to one is used by the other
within a second, and a replica killed with SIGKILL under writes loses no acknowledged event.

PostgreSQL comes from the storage tests' finder (``M6REC_TEST_POSTGRES_URL``, or a throwaway
local server on 127.0.0.1); without one the PostgreSQL cases are skipped with the reason.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

KEY = "secret"
HEAD = {"X-API-Key": KEY}


def _pg_finder():
    path = Path(__file__).resolve().parents[1] / "storage" / "conftest.py"
    spec = importlib.util.spec_from_file_location("m6rec_test_postgres", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def pg_server():
    yield from _pg_finder().postgres_server()


@pytest.fixture
def pg(pg_server):
    """The local PostgreSQL, emptied."""
    import psycopg

    with psycopg.connect(pg_server, autocommit=True) as con:
        con.execute("DROP TABLE IF EXISTS events, items, users")
    return pg_server


@pytest.fixture(params=["postgres", pytest.param("sqlite", marks=pytest.mark.slow)])
def db(request, tmp_path):
    if request.param == "sqlite":  # processes on one machine sharing a file: a polled feed
        return f"sqlite:///{tmp_path}/shared.db"
    return request.getfixturevalue("pg")


@pytest.fixture(scope="module")
def replica(live_server):
    class Replica(live_server):
        """``m6rec serve`` with extra options; `kill` sends SIGKILL."""

        def __init__(self, model_dir, db: str, *extra: str, timeout: float = 180.0):
            self.port = self.free_port()
            self.url = f"http://127.0.0.1:{self.port}"
            self.api_key = KEY
            env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "m6rec.cli", "serve", "--model-dir", str(model_dir),
                 "--db", db, "--port", str(self.port), "--api-key", KEY, *extra],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            self._wait(timeout)
            self.http = httpx.Client(base_url=self.url, timeout=30, headers=HEAD)

        def kill(self) -> None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

        def metric(self, name: str) -> float:
            for line in self.http.get("/metrics").text.splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[1])
            raise KeyError(name)

    return Replica


def until(check, timeout: float = 5.0, every: float = 0.01):
    """(seconds until ``check()`` was truthy, its value); fails after ``timeout``."""
    t0 = time.monotonic()
    while True:
        got = check()
        if got:
            return time.monotonic() - t0, got
        if time.monotonic() - t0 > timeout:
            pytest.fail(f"not true within {timeout} s: {check.__doc__ or check}")
        time.sleep(every)


def test_items_and_events_posted_to_one_replica_are_used_by_the_other(m6_dir, db, replica):
    with replica(m6_dir, db) as a, replica(m6_dir, db) as b:
        # a posted item: B encodes and indexes it from the change feed
        item = {"item_id": "n-space", "title": "galaxy rocket voyage to the stars",
                "categories": ["Sci-Fi"]}
        assert b.http.get("/items/n-space/similar").status_code == 404
        assert a.http.post("/items", json=item, headers=HEAD).status_code == 201

        def b_knows_it():
            """B answers for the item posted to A"""
            return b.http.get("/items/n-space/similar?k=3").status_code == 200

        seconds, _ = until(b_knows_it)
        assert seconds < 1.0
        # events about it, posted to B, are in A's history at once (one database) and make a
        # history A recommends from (it knows the item too)
        r = b.http.post("/events", json=[{"user_id": "fan", "item_id": "n-space"},
                                         {"user_id": "fan", "item_id": "s1"}], headers=HEAD)
        assert r.status_code == 201, r.text
        hist = a.http.get("/users/fan/history").json()["items"]
        assert [h["item_id"] for h in hist] == ["s1", "n-space"]
        recs = a.http.get("/users/fan/recommendations?k=5").json()
        assert recs["strategy"] == "history"
        assert {"n-space", "s1"}.isdisjoint(i["item_id"] for i in recs["items"])

        # popularity: many events for one item posted to A move B's cold-start answer
        until(lambda: popular(a) == popular(b))
        top = next(iter(popular(b)))
        target = next(i for i in ("k5", "k6", "k7") if i != top)
        before = popular(b)[target]
        burst = [{"user_id": f"c{k}", "item_id": target} for k in range(40)]
        assert a.http.post("/events", json=burst, headers=HEAD).status_code == 201

        def b_ranks_it_first():
            """B's most popular item is the one A got 40 events for"""
            return next(iter(popular(b))) == target

        seconds, _ = until(b_ranks_it_first)
        assert seconds < 1.0
        # each event counted once on each replica (whichever path, local or feed, came first)
        until(lambda: popular(a) == popular(b))
        assert popular(b)[target] == before + 40


def popular(server) -> dict[str, float]:
    """A cold user's answer: every item with its popularity (training + stored events)."""
    items = server.http.get("/users/nobody/recommendations?k=50").json()["items"]
    return {i["item_id"]: i["score"] for i in items}


def test_a_replica_killed_under_writes_loses_no_acknowledged_event(m6_dir, pg, replica):
    from m6rec.storage import open_store

    a, b = replica(m6_dir, pg), replica(m6_dir, pg)
    acked: dict[str, list[str]] = {"a": [], "b": []}
    stop = threading.Event()

    def write(name: str, server) -> None:
        client = httpx.Client(base_url=server.url, timeout=10)
        k = 0
        while not stop.is_set():
            user = f"{name}-{k}"
            k += 1
            try:
                r = client.post("/events", json={"user_id": user, "item_id": "s2"},
                                headers=HEAD)
            except httpx.HTTPError:  # A is gone: that event was never acknowledged
                if server.proc.poll() is not None:
                    return
                continue
            if r.status_code == 201:
                acked[name].append(user)

    threads = [threading.Thread(target=write, args=(n, s)) for n, s in (("a", a), ("b", b))]
    before = popular(b)["s2"]
    try:
        for t in threads:
            t.start()
        until(lambda: len(acked["a"]) >= 150, timeout=120, every=0.05)
        a.kill()  # SIGKILL in the middle of the writes: no shutdown code runs
        n_b = len(acked["b"])
        until(lambda: len(acked["b"]) >= n_b + 50, timeout=120, every=0.05)
        stop.set()
        for t in threads:
            t.join(30)
        with open_store(pg) as store:
            stored = {e.user_id for e in store.iter_events()}
        lost = [u for u in acked["a"] + acked["b"] if u not in stored]
        assert lost == [] and len(acked["a"]) >= 150
        # B serves every acknowledged event of A, from the database and from its feed
        for user in acked["a"][-20:]:
            hist = b.http.get(f"/users/{user}/history").json()["items"]
            assert [h["item_id"] for h in hist] == ["s2"]
        # and counts each stored event once, A's (acknowledged or not) and its own
        until(lambda: popular(b)["s2"] == before + len(stored), timeout=3.0)
        assert b.metric("m6rec_replication_applied") > 0
    finally:
        stop.set()
        a.stop()
        b.stop()


@pytest.mark.slow  # two more model loads; `make test-all` runs it
def test_workers_behind_one_port_follow_each_other(m6_dir, pg, replica):
    with replica(m6_dir, pg, "--workers", "2") as w:
        item = {"item_id": "n-baking", "title": "kitchen bread baking recipes"}
        assert w.http.post("/items", json=item, headers=HEAD).status_code == 201
        time.sleep(1.0)
        # each request goes to whichever worker accepts it: all of them know the item
        codes = [httpx.get(f"{w.url}/items/n-baking/similar?k=2", headers=HEAD).status_code
                 for _ in range(30)]
        assert codes == [200] * 30
