"""The change feed every replica follows: ids and item seqs by offset, and (PostgreSQL) the
LISTEN/NOTIFY watch that wakes a follower."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest

from m6rec.storage import Event, Item, open_store


def ev(u: str, i: str, t: float) -> Event:
    return Event(user_id=u, item_id=i, timestamp=t)


def test_item_seqs_follow_the_writes_and_a_rewrite_moves_an_item_on(store):
    a = store.put_items([Item("n1", {"title": "one"}), Item("n2", {"title": "two"})])
    b = store.put_items([Item("n1", {"title": "one again"})])
    assert a[1] == a[0] + 1 and b[0] == a[1] + 1
    feed = store.item_changes(0)
    assert [(i.item_id, i.seq, i.fields["title"]) for i in feed] == [
        ("n2", a[1], "two"), ("n1", b[0], "one again")]
    assert [i.item_id for i in store.item_changes(a[1])] == ["n1"]
    assert store.item_changes(b[0]) == []
    assert [i.item_id for i in store.item_changes(0, batch=1)] == ["n2"]
    assert store.get_item("n1").seq == b[0]
    assert [i.item_id for i in store.all_items()] == ["n2", "n1"]
    assert store.put_items([]) == []


def test_a_second_connection_reads_the_feed_from_its_offset(store_url):
    with open_store(store_url) as a, open_store(store_url) as b:
        ids = a.add_events([ev("u", "x", 1.0), ev("u", "y", 2.0)])
        seen = [e.id for e in b.iter_events(after_id=0)]
        assert seen == ids
        more = b.add_events([ev("v", "z", 3.0)])
        assert [e.item_id for e in a.iter_events(after_id=ids[-1])] == ["z"]
        assert more[0] > ids[-1]
        a.put_items([Item("n", {"title": "t"})])
        assert [i.item_id for i in b.item_changes(0)] == ["n"]


def test_concurrent_writers_commit_in_id_order(store_url):
    """A reader that advances its offset to the largest id it has read never misses an event
    committed later with a smaller id (writers are serialised)."""
    stop = threading.Event()
    writers = [open_store(store_url) for _ in range(3)]
    reader = open_store(store_url)
    errors: list[BaseException] = []

    def write(s, w: int) -> None:
        try:
            k = 0
            while not stop.is_set():
                s.add_events([ev(f"w{w}", f"i{k}", float(k)), ev(f"w{w}", "j", float(k))])
                k += 1
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=write, args=(s, w)) for w, s in enumerate(writers)]
    for t in threads:
        t.start()
    offset, read = 0, []
    t0 = time.monotonic()
    while time.monotonic() - t0 < 2.0:
        batch = list(reader.iter_events(after_id=offset))
        if batch:
            read += [e.id for e in batch]
            offset = batch[-1].id
    stop.set()
    for t in threads:
        t.join()
    read += [e.id for e in reader.iter_events(after_id=offset)]
    assert not errors
    everything = [e.id for e in reader.iter_events()]
    assert len(everything) > 20
    assert read == everything  # every id read once, none skipped
    for s in writers + [reader]:
        s.close()


def test_an_old_sqlite_database_gets_item_seqs(tmp_path):
    path = tmp_path / "old.db"
    con = sqlite3.connect(path)
    con.executescript("""
        CREATE TABLE items (item_id TEXT PRIMARY KEY, fields TEXT NOT NULL,
                            updated REAL NOT NULL);
        INSERT INTO items VALUES ('b', '{"title": "B"}', 2.0), ('a', '{"title": "A"}', 5.0),
                                 ('c', '{"title": "C"}', 1.0);""")
    con.commit()
    con.close()
    with open_store(f"sqlite:///{path}") as s:
        assert [(i.item_id, i.seq) for i in s.item_changes(0)] == [("c", 1), ("b", 2), ("a", 3)]
        assert s.put_items([Item("d", {"title": "D"})]) == [4]


def test_sqlite_has_no_push_watch(tmp_path):
    with open_store(f"sqlite:///{tmp_path}/s.db") as s:
        assert s.shared and not s.notifies
        with pytest.raises(NotImplementedError, match="poll"):
            s.watch()
    with open_store("sqlite://:memory:") as s:
        assert not s.shared


def test_postgres_watch_wakes_on_another_connections_commit(pg_url):
    with open_store(pg_url) as a, open_store(pg_url) as b:
        w = b.watch()
        try:
            assert w.wait(0.2) is False  # nothing committed: times out
            t0 = time.monotonic()
            a.add_events([ev("u", "x", 1.0)])
            assert w.wait(5.0) is True
            assert time.monotonic() - t0 < 1.0
            a.put_items([Item("n", {"title": "t"})])
            assert w.wait(5.0) is True
            w.con.close()  # a broken connection: the next wait reconnects and says so
            assert w.wait(0.2) is True and w.reconnects == 1
            a.add_events([ev("u", "y", 2.0)])
            assert w.wait(5.0) is True
        finally:
            w.close()
