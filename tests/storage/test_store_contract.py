"""One contract for every store backend (SQLite and PostgreSQL, see conftest.py)."""

from __future__ import annotations

import threading

import pytest

from m6rec.storage import Event, Item, open_store


def ev(u: str, i: str, t: float, kind: str | None = None) -> Event:
    return Event(user_id=u, item_id=i, type=kind, timestamp=t)


def test_events_are_stored_in_order_and_per_user(store):
    ids = store.add_events([ev("u1", "a", 1.0), ev("u2", "b", 2.0), ev("u1", "c", 3.0, "buy")])
    assert len(ids) == 3 and ids == sorted(ids) and len(set(ids)) == 3
    got = store.user_events("u1")
    assert [(e.item_id, e.type, e.timestamp) for e in got] == [("a", None, 1.0), ("c", "buy", 3.0)]
    assert [e.id for e in got] == [ids[0], ids[2]]
    assert store.user_events("nobody") == []
    assert store.count_events() == 3


def test_user_events_limit_keeps_the_newest(store):
    store.add_events([ev("u", str(k), float(k)) for k in range(10)])
    assert [e.item_id for e in store.user_events("u", limit=3)] == ["7", "8", "9"]


def test_iter_events_pages_through_everything(store):
    store.add_events([ev(f"u{k % 7}", f"i{k}", float(k)) for k in range(25)])
    got = list(store.iter_events(batch=4))
    assert [e.item_id for e in got] == [f"i{k}" for k in range(25)]
    assert [e.item_id for e in store.iter_events(after_id=got[19].id)] == [
        f"i{k}" for k in range(20, 25)]


def test_item_counts_after_an_offset_match_the_log(store):
    from m6rec.storage.base import Store

    assert store.item_counts() == ({}, 0)
    ids = store.add_events([ev("u", f"i{k % 3}", float(k)) for k in range(10)])
    assert store.item_counts() == ({"i0": 4, "i1": 3, "i2": 3}, ids[-1])
    assert store.item_counts(ids[6]) == ({"i1": 1, "i2": 1, "i0": 1}, ids[-1])
    assert store.item_counts(ids[-1]) == ({}, ids[-1])
    assert Store.item_counts(store, ids[6]) == store.item_counts(ids[6])  # the generic loop


def test_events_survive_reopening(store_url):
    s = open_store(store_url)
    s.add_events([ev("u", "x", 5.0)])
    s.close()
    with open_store(store_url) as again:
        assert [e.item_id for e in again.user_events("u")] == ["x"]


def test_bad_events_are_rejected_and_nothing_is_half_written(store):
    with pytest.raises(ValueError, match="timestamp"):
        store.add_events([ev("u", "a", 1.0), Event("u", "b")])
    with pytest.raises(ValueError, match="user_id"):
        store.add_events([Event("", "b", timestamp=1.0)])
    assert store.count_events() == 0


def test_items_upsert_and_read_back(store):
    store.put_items([Item("n1", {"title": "Space Opera", "categories": "Sci-Fi"})])
    store.put_items([Item("n2", {"title": "Quiet Drama"})])
    store.put_items([Item("n1", {"title": "Space Opera II"})])
    assert store.get_item("n1").fields == {"title": "Space Opera II"}
    assert store.get_item("missing") is None
    assert sorted(i.item_id for i in store.all_items()) == ["n1", "n2"]


def test_user_profiles(store):
    assert store.get_user("u") is None
    store.put_user("u", {"age": 30, "occupation": "writer"})
    store.put_user("u", {"age": 31})
    assert store.get_user("u") == {"age": 31}


def test_concurrent_writers_lose_nothing(store):
    errors: list[BaseException] = []

    def writer(w: int) -> None:
        try:
            for k in range(25):
                store.add_events([ev(f"w{w}", f"i{k}", float(k))])
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert store.count_events() == 200
    assert all(len(store.user_events(f"w{w}")) == 25 for w in range(8))


def test_closed_store_refuses_work(store_url):
    s = open_store(store_url)
    s.close()
    with pytest.raises(RuntimeError, match="closed"):
        s.count_events()


def test_ping(store):
    store.ping()
