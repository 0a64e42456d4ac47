"""SQLite specifics: durable settings and the URL forms."""

from __future__ import annotations

import pytest

from m6rec.storage import open_store
from m6rec.storage.sqlite import sqlite_path


def test_wal_and_synchronous_full(tmp_path):
    with open_store(f"sqlite:///{tmp_path}/x.db") as s:
        p = s.pragmas()
    assert p["journal_mode"] == "wal"
    assert p["synchronous"] == 2  # FULL


def test_url_forms():
    assert sqlite_path("sqlite:///rel.db") == "rel.db"
    assert sqlite_path("sqlite:////abs/x.db") == "/abs/x.db"
    assert sqlite_path("sqlite://:memory:") == ":memory:"
    with pytest.raises(ValueError, match="sqlite:///PATH"):
        sqlite_path("sqlite://host/x.db")


def test_unknown_scheme_is_a_clear_error():
    with pytest.raises(ValueError, match="expected sqlite"):
        open_store("mysql://x")


def test_memory_store_works(tmp_path):
    from m6rec.storage import Event

    with open_store("sqlite://:memory:") as s:
        s.add_events([Event("u", "i", timestamp=1.0)])
        assert s.count_events() == 1
