"""Micro-batching: many requests answered by one call, each with its own result or error, and
a batched engine call answering exactly what single calls answer."""

from __future__ import annotations

import threading

import pytest

from m6rec.serve.batching import BatcherClosed, MicroBatcher


def test_batcher_answers_each_request_and_batches_under_load():
    gate = threading.Event()
    calls = []

    def square(xs):
        gate.wait(5)  # hold the first batch so the others queue up behind it
        calls.append(list(xs))
        return [x * x for x in xs]

    b = MicroBatcher(square, max_batch=8)
    futs = [b.submit(x) for x in range(20)]
    gate.set()
    assert [f.result(5) for f in futs] == [x * x for x in range(20)]
    assert sum(len(c) for c in calls) == 20
    assert max(len(c) for c in calls) <= 8
    assert len(calls) < 20  # the queued requests were answered together
    b.close()


def test_batcher_per_request_errors_and_failed_batch():
    def fn(xs):
        if "boom" in xs:
            raise OSError("disk gone")
        return [ValueError(f"bad {x}") if x < 0 else x for x in xs]

    b = MicroBatcher(fn)
    good, bad = b.submit(1), b.submit(-1)
    assert good.result(5) == 1
    with pytest.raises(ValueError, match="bad -1"):
        bad.result(5)
    with pytest.raises(OSError, match="disk gone"):
        b.submit("boom").result(5)
    assert b.submit(2).result(5) == 2  # the worker survives a failed batch
    b.close()


def test_batcher_close_answers_queued_then_refuses():
    gate = threading.Event()

    def slow(xs):
        gate.wait(5)
        return xs

    b = MicroBatcher(slow)
    futs = [b.submit(x) for x in range(5)]
    closer = threading.Thread(target=b.close)
    closer.start()
    gate.set()
    closer.join(10)
    assert [f.result(1) for f in futs] == list(range(5))
    with pytest.raises(BatcherClosed):
        b.submit(9)


@pytest.mark.parametrize("which", ["m6", "ease"])
def test_engine_batch_equals_single_requests(which, m6_dir, ease_dir, tmp_path):
    from m6rec.serve.engine import Engine, NotFound, RecRequest, Unsupported
    from m6rec.storage import open_store

    store = open_store(f"sqlite:///{tmp_path}/ev.db")
    engine = Engine(m6_dir if which == "m6" else ease_dir, store)
    engine.add_events([{"user_id": "u1", "item_id": "s0"}, {"user_id": "new", "item_id": "k2"}])
    reqs = [RecRequest("u0", 5), RecRequest("u1", 3, ("s1", "s2")), RecRequest("new", 4),
            RecRequest("nobody", 6), RecRequest("u3", 2, explain=True)]
    if which == "m6":
        reqs += [RecRequest("u0", 5, query="baking bread"), RecRequest("ghost", 3,
                                                                       query="rocket")]
    else:
        reqs += [RecRequest("u0", 5, query="baking bread")]  # EASE reads no text: 422
    many = engine.recommend_many(reqs)
    assert len(many) == len(reqs)
    for r, got in zip(reqs, many, strict=True):
        try:
            one = engine.recommend(r.user_id, r.k, list(r.exclude), r.query, r.explain)
        except (NotFound, Unsupported) as e:
            assert type(got) is type(e) and str(got) == str(e)
            continue
        assert got["strategy"] == one["strategy"]
        assert [i["item_id"] for i in got["items"]] == [i["item_id"] for i in one["items"]]
        assert [i["score"] for i in got["items"]] == pytest.approx(
            [i["score"] for i in one["items"]], rel=1e-5, abs=1e-6)
        assert len(got["items"]) == r.k
        assert not set(r.exclude) & {i["item_id"] for i in got["items"]}
    assert "s0" not in {i["item_id"] for i in many[1]["items"]}  # the stored event counts
    assert all("because" in i for i in many[4]["items"])
    # the batcher path gives the same answer
    via = engine.submit(reqs[0]).result(10)
    assert [i["item_id"] for i in via["items"]] == [i["item_id"] for i in many[0]["items"]]
    engine.close()
    with pytest.raises(BatcherClosed):
        engine.submit(reqs[0])
    store.close()


def test_group_commit_keeps_requests_apart(m6_dir, tmp_path):
    from m6rec.serve.engine import Engine, NotFound
    from m6rec.storage import open_store

    store = open_store(f"sqlite:///{tmp_path}/ev.db")
    engine = Engine(m6_dir, store)
    out = engine.add_events_many([
        [{"user_id": "a", "item_id": "s1"}, {"user_id": "a", "item_id": "s2"}],
        [{"user_id": "b", "item_id": "s1"}, {"user_id": "b", "item_id": "nope"}],
        [{"user_id": "", "item_id": "s3"}],
        [{"user_id": "c", "item_id": "k1", "timestamp": 5.0}]])
    assert isinstance(out[1], NotFound) and "events[1].item_id 'nope'" in str(out[1])
    assert isinstance(out[2], ValueError)
    assert len(out[0]) == 2 and len(out[3]) == 1 and out[0][1] < out[3][0]
    assert [e.item_id for e in store.user_events("a")] == ["s1", "s2"]
    assert store.user_events("b") == []  # all or nothing per request
    assert [e.timestamp for e in store.user_events("c")] == [5.0]
    ids = engine.submit_events([{"user_id": "d", "item_id": "s4"}]).result(10)
    assert [e.id for e in store.user_events("d")] == ids
    engine.close()
    store.close()


def test_user_vector_cache_is_exact_and_follows_writes(m6_dir, tmp_path):
    import numpy as np

    from m6rec.serve.engine import Engine
    from m6rec.storage import open_store

    store = open_store(f"sqlite:///{tmp_path}/ev.db")
    cached, plain = Engine(m6_dir, store), Engine(m6_dir, store, user_cache=0)

    class Top(list):  # (item_id, score) pairs; equal when ids match and scores agree to 1e-5
        def __eq__(self, other):
            return [i for i, _ in self] == [i for i, _ in other] and all(
                abs(a - b) <= 1e-5 * max(1.0, abs(a))
                for (_, a), (_, b) in zip(self, other, strict=False))

        def __ne__(self, other):
            return not self == other

        __hash__ = None

    def top(engine, user):
        return Top((i["item_id"], i["score"]) for i in engine.recommend(user, 8)["items"])

    first = top(cached, "u0")
    assert cached.cache_misses == 1 and cached.cache_hits == 0
    assert top(cached, "u0") == first and cached.cache_hits == 1  # reused, same answer
    assert top(plain, "u0") == first  # and what encoding again gives
    cached.add_events([{"user_id": "u0", "item_id": "k3"}])  # history changed: re-encoded
    assert cached.refresher.wait_idle()
    assert cached.cache_misses == 2 and cached.refresher.refreshed == 1  # in the background
    after = top(cached, "u0")
    assert cached.cache_hits == 2  # the request read the refreshed vector
    assert "k3" not in dict(after) and after != first
    assert top(plain, "u0") == after
    # a history item whose text changes moves the user's vector: the cache must not serve it
    hist = [h["item_id"] for h in cached.user_history("u0")["items"]]
    cached.add_item(hist[0], {"title": "kitchen soup bread baking recipes"})
    plain.add_item(hist[0], {"title": "kitchen soup bread baking recipes"})
    changed = top(cached, "u0")
    assert cached.cache_misses == 3
    assert top(plain, "u0") == changed
    v = cached._cached_user_vectors([("u0", *cached.history("u0"))])
    assert np.allclose(v, plain._user_vectors(plain._stack([plain.history("u0")])), atol=1e-6)
    for e in (cached, plain):
        e.close()
    store.close()


def test_events_refresh_cached_explanations_to_what_a_request_computes(m6_dir, tmp_path):
    from m6rec.serve.engine import Engine
    from m6rec.storage import open_store

    store = open_store(f"sqlite:///{tmp_path}/ev.db")
    cached = Engine(m6_dir, store)
    fresh = Engine(m6_dir, store, user_cache=0, explain_cache=0)

    def explained(engine, user):
        return [(i["item_id"], i["because"], [(h["item_id"], h["delta"]) for h in i["history"]])
                for i in engine.recommend(user, 5, explain=True)["items"]]

    explained(cached, "u1")
    explained(cached, "u2")
    loo = cached.explanations.cache
    assert (loo.misses, loo.hits) == (2, 0)
    cached.add_events([{"user_id": "u1", "item_id": "k5"}, {"user_id": "u3", "item_id": "k1"}])
    assert cached.refresher.wait_idle()
    # u1's entries were re-encoded; u3 never asked (nothing cached), u2 had no event
    assert cached.refresher.refreshed == 2 and loo.misses == 3
    after = explained(cached, "u1")
    assert loo.hits == 1 and loo.misses == 3  # the request used the refreshed vectors
    assert after == explained(fresh, "u1")  # exactly what computing them now gives
    assert any(h for _, _, h in after)  # history items are cited
    for e in (cached, fresh):
        e.close()
    store.close()
