"""Online updates in the service: the model learns from the event log off the request path and
the new version is swapped in; posted items and in-flight engines survive the swap."""

from __future__ import annotations

import time

import numpy as np
import pytest

from m6rec.serve.updates import OnlineUpdates, UpdateSpec

KEY = {"X-API-Key": "secret"}


@pytest.mark.parametrize("text,want", [
    ("foldin every=100", UpdateSpec("foldin", 100, 0.0)),
    ("finetune interval=30", UpdateSpec("finetune", 0, 30.0)),
    ("foldin every=5, interval=2 poll=0.1", UpdateSpec("foldin", 5, 2.0, 0.1)),
    ("foldin", UpdateSpec("foldin", 1000, 0.0)),
])
def test_update_spec_parses(text, want):
    assert UpdateSpec.parse(text) == want


@pytest.mark.parametrize("text", ["retrain every=5", "foldin every=x", "foldin often",
                                  "foldin every=0", "foldin every=-3", "foldin poll=0"])
def test_update_spec_rejects_with_a_reason(text):
    with pytest.raises(ValueError, match="--update"):
        UpdateSpec.parse(text)


def test_off_means_none():
    assert UpdateSpec.parse(None) is None and UpdateSpec.parse("off") is None


class Holder:
    """The app's side of the swap, without FastAPI."""

    def __init__(self, engine):
        self.engine, self.retired = engine, []

    def swap(self, old, new):
        assert self.engine is old
        self.engine = new
        self.retired.append(old)


def manual(spec: str, holder: Holder) -> OnlineUpdates:
    # a long poll: the test drives `step` itself, the thread only wakes to stop
    return OnlineUpdates(UpdateSpec.parse(spec + " poll=3600"), lambda: holder.engine,
                         holder.swap)


def test_foldin_updates_ease_and_swaps(ease_dir, tmp_path):
    from m6rec.serve.engine import Engine
    from m6rec.storage import open_store

    store = open_store(f"sqlite:///{tmp_path}/ev.db")
    holder = Holder(Engine(ease_dir, store))
    up = manual("foldin every=6", holder)
    first = holder.engine
    before = first.model.score(first._stack([first.history("u2")]))
    assert not up.step()  # nothing committed yet
    first.add_events([{"user_id": "u2", "item_id": f"s{k}"} for k in range(3)])
    assert not up.step() and up.pending == 3 and up.lag_seconds >= 0  # below every=6
    first.add_events([{"user_id": "fan", "item_id": f"s{k}"} for k in range(3)])
    assert up.step()  # six waiting: folded in and swapped
    new = holder.engine
    assert new is not first and holder.retired == [first]
    assert new.model_version == up.version == 1 and up.pending == 0 and up.lag_seconds == 0
    assert up.last_events == 6
    after = new.model.score(new._stack([new.history("u2")]))
    assert not np.allclose(before, after)  # the item-item weights learned the new events
    got = new.recommend("u2", k=5)
    assert not {"s0", "s1", "s2"} & {i["item_id"] for i in got["items"]}  # seen: excluded
    assert first.model is not new.model  # the retired engine kept its own model
    up.stop()
    new.close()
    store.close()


def test_finetune_swap_keeps_posted_items(m6_dir, tmp_path):
    from m6rec.serve.engine import Engine
    from m6rec.storage import open_store

    store = open_store(f"sqlite:///{tmp_path}/ev.db")
    holder = Holder(Engine(m6_dir, store))
    up = manual("finetune every=4", holder)
    first = holder.engine
    first.add_item("new-space", {"title": "galaxy rocket stars voyage", "categories": "Sci-Fi"})
    first.add_events([{"user_id": "u4", "item_id": "s1"}, {"user_id": "u4", "item_id": "s2"},
                      {"user_id": "u4", "item_id": "new-space"},
                      {"user_id": "u6", "item_id": "s3"}])
    assert up.step()
    new = holder.engine
    assert new.model_version == 1
    assert len(new.item_ids) == len(first.item_ids) == len(new.scorer.table) == len(
        new.scorer.vectors(np.arange(len(new.item_ids))))
    assert "new-space" in {i["item_id"] for i in new.recommend("u0", k=3)["items"]}
    assert up._updater.proc.is_alive()  # the update ran in its own process
    # an item posted through the retired engine (a request that started before the swap)
    # reaches the serving one
    first.add_item("late-space", {"title": "planets galaxy rocket", "categories": "Sci-Fi"})
    assert "late-space" in new.item_pos and "late-space" not in first.item_pos
    assert len(new.scorer.table) == len(new.item_ids)
    up.stop()
    new.close()
    first.close()
    store.close()


def test_service_updates_in_the_background_and_reports_them(ease_dir, tmp_path):
    import re

    from fastapi.testclient import TestClient

    from m6rec.serve.app import create_app
    from m6rec.serve.settings import ServeSettings

    settings = ServeSettings(model_dir=ease_dir, db=f"sqlite:///{tmp_path}/events.db",
                             api_key="secret", data=None, update="foldin every=4 poll=0.05")
    with TestClient(create_app(settings)) as client:
        r = client.post("/events", json=[{"user_id": "u3", "item_id": f"k{k}"}
                                         for k in range(4)], headers=KEY)
        assert r.status_code == 201, r.text

        def gauge(name):
            text = client.get("/metrics").text
            return float(re.search(rf"^m6rec_{name} (\S+)$", text, re.M).group(1))

        t0 = time.monotonic()
        while gauge("model_version") < 1 and time.monotonic() - t0 < 60:
            time.sleep(0.05)
        assert gauge("model_version") == 1
        assert gauge("model_update_pending_events") == 0
        assert gauge("model_update_lag_seconds") == 0
        assert client.get("/health").json()["model_version"] == 1
        got = client.get("/users/u3/recommendations", params={"k": 5},
                         headers=KEY).json()
        assert not {f"k{k}" for k in range(4)} & {i["item_id"] for i in got["items"]}
