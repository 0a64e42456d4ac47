"""The replication parts without processes: exactly-once cursors, the mode checks, and two
engines in one process following one SQLite file."""

from __future__ import annotations

import pytest

from m6rec.serve.replication import Cursor, Follower, ReplicationSpec, catch_up


def test_a_shared_cursor_applies_each_change_once_whichever_path_comes_first():
    c = Cursor(0, shared=True)
    assert c.claim(1) and c.offset == 1  # contiguous: folded into the offset
    assert c.claim(4, "x") and c.offset == 1 and c.ahead == {4: "x"}  # ours, above a gap
    assert not c.claim(4) and not c.claim(1)  # the feed meets them again: skipped
    assert c.claim(2) and c.claim(3) and c.offset == 4 and c.ahead == {}
    assert c.claim(9, "y")
    c.advance(7)  # the feed read up to 7 (5..7 applied by it)
    assert c.offset == 7 and c.ahead == {9: "y"}
    assert not c.claim(6) and c.claim(8) and c.offset == 9
    twin = c.copy()
    assert twin.claim(10) and not c.ahead and c.offset == 9


def test_an_exclusive_cursor_counts_every_local_write():
    c = Cursor()
    assert c.claim(5) and c.claim(3) and c.offset == 5  # one writer: nothing to skip


def test_modes_resolve_by_database_and_misconfigurations_say_what_to_do():
    assert ReplicationSpec.resolve("auto", "postgresql://u@127.0.0.1/db").mode == "notify"
    assert ReplicationSpec.resolve(None, "sqlite:///x.db") == ReplicationSpec("poll", 0.1)
    assert ReplicationSpec.resolve("auto", "sqlite://:memory:").mode == "off"
    assert ReplicationSpec.resolve("notify", "postgres://h/db", poll=2).poll == 2.0
    with pytest.raises(ValueError, match="notify needs PostgreSQL.*--replication poll"):
        ReplicationSpec.resolve("notify", "sqlite:///x.db")
    with pytest.raises(ValueError, match="in-memory SQLite database is private"):
        ReplicationSpec.resolve("poll", "sqlite://:memory:")
    with pytest.raises(ValueError, match="--workers 2 with --replication off"):
        ReplicationSpec.resolve("off", "sqlite:///x.db", workers=2)
    with pytest.raises(ValueError, match="--workers 3 with --replication off.*database file"):
        ReplicationSpec.resolve("auto", "sqlite://:memory:", workers=3)
    with pytest.raises(ValueError, match="expected one of auto, notify, poll, off"):
        ReplicationSpec.resolve("sometimes", "sqlite:///x.db")
    with pytest.raises(ValueError, match="poll must be > 0"):
        ReplicationSpec.resolve("poll", "sqlite:///x.db", poll=0)
    with pytest.raises(ValueError, match="needs a replication mode"):
        Follower(ReplicationSpec("off"), None, lambda: None)


def test_two_engines_on_one_file_follow_each_other_exactly_once(m6_dir, tmp_path):
    from m6rec.serve.engine import Engine
    from m6rec.storage import open_store

    url = f"sqlite:///{tmp_path}/shared.db"
    with open_store(url) as sa, open_store(url) as sb:
        a = Engine(m6_dir, sa, shared_log=True)
        b = Engine(m6_dir, sb, shared_log=True)
        a.add_events([{"user_id": "u0", "item_id": "s1"}])
        b.add_events([{"user_id": "u1", "item_id": "s1"}, {"user_id": "u2", "item_id": "s1"}])
        base = a.popularity[a.item_index("s1")] - 1
        assert b.popularity[b.item_index("s1")] == base + 2  # B has not read A's yet
        res = a.add_item("n1", {"title": "galaxy rocket stars"})
        assert res["created"] and res["indexed"]
        assert b.item_index("n1") is None
        assert catch_up(b) == 2 and catch_up(a) == 2  # A's event + item; B's two events
        assert catch_up(a) == catch_up(b) == 0  # read again: nothing twice
        for e in (a, b):
            assert e.popularity[e.item_index("s1")] == base + 3
            assert e.events_seen == 3 and not e.catalogue.event_cursor.ahead
        assert b.item_index("n1") is not None and b.titles[b.item_index("n1")] == \
            "galaxy rocket stars"
        # an event naming the item, posted to B before A... A counts it once it has the item
        b.add_events([{"user_id": "u3", "item_id": "n1"}])
        assert catch_up(a) == 1 and a.popularity[a.item_index("n1")] == 1
        b.add_item("n1", {"title": "galaxy rocket stars, second edition"})
        assert catch_up(a) == 1 and a.titles[a.item_index("n1")].endswith("second edition")
        # a snapshot written with changes applied out of order covers only its offset
        a.add_events([{"user_id": "u4", "item_id": "s2"}])
        b.add_events([{"user_id": "u5", "item_id": "s2"}])
        a.add_events([{"user_id": "u6", "item_id": "s2"}])
        offset, counts = a.catalogue.log_state()
        assert offset == 5 and counts["s2"] == 1 and a.catalogue.event_cursor.ahead == {7: "s2"}
        a.close()
        b.close()


@pytest.mark.parametrize(("db", "extra", "says"), [
    ("sqlite:///{tmp}/x.db", ["--replication", "notify"], "notify needs PostgreSQL"),
    ("sqlite://:memory:", ["--workers", "2"], "--workers 2 with --replication off"),
    ("sqlite://:memory:", ["--replication", "poll"], "in-memory SQLite database is private"),
])
def test_serve_refuses_replication_it_cannot_do_before_loading(ease_dir, tmp_path, db, extra,
                                                               says):
    from typer.testing import CliRunner

    from m6rec.cli import app

    r = CliRunner().invoke(app, ["serve", "--model-dir", str(ease_dir), "--db",
                                 db.format(tmp=tmp_path), *extra])
    assert r.exit_code == 2 and says in r.stderr
    assert "API key" not in r.stderr  # nothing started, no key handed out
