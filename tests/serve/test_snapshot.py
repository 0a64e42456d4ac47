"""The log-derived state (events per item) is snapshotted with its log offset: a start replays
only the tail, and a corrupt or stale snapshot is ignored and the state rebuilt."""

from __future__ import annotations

import json

import numpy as np

from m6rec.serve import snapshot
from m6rec.serve.engine import Engine
from m6rec.storage import Event, open_store


def events(n, start=0, item="s1"):
    return [Event(f"x{k}", item, None, 1e9 + start + k) for k in range(n)]


def test_start_replays_the_tail_and_ignores_bad_snapshots(m6_dir, tmp_path):
    url, snap = f"sqlite:///{tmp_path}/e.db", tmp_path / "e.snapshot.json"
    with open_store(url) as store:
        store.add_events(events(5))
        first = Engine(m6_dir, store, snapshot=snap)
        first.add_events([{"user_id": "y", "item_id": "k2", "timestamp": 2e9}])
        first.save_snapshot()
        covered = json.loads(snap.read_text())
        assert covered["counts"] == {"s1": 5, "k2": 1} and covered["offset"] == 6
        store.add_events(events(3, 10, "s2"))  # the tail: after the snapshot
        again = Engine(m6_dir, store, snapshot=snap)
        assert again.snapshot_offset == 6 and again.events_seen == 9
        fresh = Engine(m6_dir, store, snapshot=None)  # the whole log, no snapshot
        np.testing.assert_array_equal(again.popularity, fresh.popularity)
        assert fresh.popularity[fresh.item_pos["s2"]] - first.popularity[
            first.item_pos["s2"]] == 3
        # corrupt: the checksum fails, the whole log is replayed, the answer is the same
        snap.write_text(snap.read_text().replace('"s1": 5', '"s1": 50'))
        bad = Engine(m6_dir, store, snapshot=snap)
        assert bad.snapshot_offset == 0
        np.testing.assert_array_equal(bad.popularity, fresh.popularity)
        snap.write_text("{not json")
        assert Engine(m6_dir, store, snapshot=snap).snapshot_offset == 0
        first.save_snapshot()
    # stale: another log at the same place (its event 6 is not the covered one)
    other = f"sqlite:///{tmp_path}/other.db"
    with open_store(other) as store:
        store.add_events(events(7, 100, "k1"))
        assert snapshot.load(snap, store) is None
        e = Engine(m6_dir, store, snapshot=snap)
        assert e.snapshot_offset == 0 and e.popularity[e.item_pos["s1"]] == fresh.popularity[
            fresh.item_pos["s1"]] - 5


def test_the_service_writes_its_snapshot_next_to_sqlite(m6_dir, tmp_path):
    from fastapi.testclient import TestClient

    from m6rec.serve.app import create_app
    from m6rec.serve.settings import ServeSettings

    s = ServeSettings(model_dir=m6_dir, db=f"sqlite:///{tmp_path}/ev.db", api_key="k",
                      data=None)
    with TestClient(create_app(s)) as c:
        r = c.post("/events", json=[{"user_id": "a", "item_id": "s3"}] * 4,
                   headers={"X-API-Key": "k"})
        assert r.status_code == 201
        assert c.post("/admin/reload", headers={"X-API-Key": "k"}).status_code == 200
        assert c.app.state.engine.snapshot_offset == 4  # the reload replayed nothing
    body = json.loads((tmp_path / "ev.db.snapshot.json").read_text())
    assert body["offset"] == 4 and body["counts"] == {"s3": 4}
