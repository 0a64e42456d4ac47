"""The engine's parts, each alone: catalogue, user cache, scorers, query matching; and an
engine derived from its parts."""

from __future__ import annotations

import numpy as np
import pytest

from m6rec.serve.catalogue import Catalogue, categories_of, title_of
from m6rec.serve.user_cache import UserCache, history_key


def small_catalogue(lm: bool = True) -> Catalogue:
    rng = np.random.default_rng(0)
    enc = rng.normal(size=(3, 4)).astype(np.float32) if lm else None
    return Catalogue(["a", "b", "c"], ["A", "B", "C"], [["x"], ["x", "y"], []],
                     np.array([3.0, 1.0, 0.0]), enc)


def test_catalogue_publishes_a_posted_item_last_and_grows():
    cat = small_catalogue()
    for k in range(20):  # past the first popularity and LM buffers
        pos = cat.append(f"n{k}", f"N{k}", ["z"], np.full(4, k, np.float32))
        assert cat.index(f"n{k}") is None and cat.titles[pos] == f"N{k}"
        cat.publish(f"n{k}", pos)
        assert cat.index(f"n{k}") == pos == 3 + k and cat.is_posted(pos)
    assert len(cat) == 23 and cat.n_base == 3
    np.testing.assert_array_equal(cat.posted_lm()[:, 0], np.arange(20))
    assert len(cat.popularity) >= 23


def test_catalogue_counts_events_and_replayed_log():
    cat = small_catalogue()
    cat.add_log_counts({"b": 4, "gone": 2})  # an item no longer in the catalogue still counts
    cat.count(["a", "b", "b"])
    np.testing.assert_array_equal(cat.popularity[:3], [4.0, 7.0, 0.0])
    assert cat.log_counts == {"b": 6, "gone": 2, "a": 1}


def test_catalogue_category_matrix_follows_updates_and_copies_are_independent():
    cat = small_catalogue()
    m, vocab = cat.category_matrix(3)
    assert vocab == ["x", "y"] and m.toarray().tolist() == [[1, 0], [1, 1], [0, 0]]
    assert cat.category_matrix(3)[0] is m  # cached
    twin = cat.copy()
    cat.update(2, "C2", ["y"], np.ones(4, np.float32))
    assert cat.version == 1 and cat.category_matrix(3)[0].toarray()[2].tolist() == [0, 1]
    assert twin.titles[2] == "C" and twin.category_matrix(3)[0].toarray()[2].tolist() == [0, 0]
    assert not np.allclose(twin.lm[2], 1.0)
    twin.publish("t", twin.append("t", "T", [], np.zeros(4, np.float32)))
    assert cat.index("t") is None and len(cat) == 3


def test_item_field_helpers():
    assert title_of({"name": "N"}, "i") == "N" and title_of({}, "i") == "i"
    assert categories_of({"categories": "Sci-Fi| Drama,Comedy"}) == ["Sci-Fi", "Drama", "Comedy"]
    assert categories_of({"categories": ["A", "B"]}) == ["A", "B"] and categories_of({}) == []


def test_user_cache_computes_misses_once_evicts_and_follows_keys():
    cache = UserCache(2)
    calls = []

    def compute(miss):
        calls.append(list(miss))
        return [f"v{x}" for x in miss]

    assert cache.get_or_compute(["u", "v"], [b"1", b"1"], compute) == ["v0", "v1"]
    assert cache.get_or_compute(["u", "v", "w"], [b"1", b"2", b"1"], compute) == [
        "v0", "v1", "v2"]
    assert calls == [[0, 1], [1, 2]]  # u cached; v's key changed; w new
    assert (cache.hits, cache.misses) == (1, 4)
    assert len(cache) == 2 and cache.get("u", b"1") is None  # least recently used left
    off = UserCache(0)
    off.get_or_compute(["u"], [b"1"], compute)
    assert len(off) == 0


def test_history_key_reads_every_array():
    items, ts, ev = np.array([1, 2]), np.array([1.0, 2.0]), np.array([0, 0])
    k = history_key(b"p", 3, items, ts, ev)
    assert k == history_key(b"p", 3, items.copy(), ts.copy(), ev.copy())
    assert len({k, history_key(b"q", 3, items, ts, ev), history_key(b"p", 4, items, ts, ev),
                history_key(b"p", 3, items, ts + 1, ev), history_key(b"p", 3, items, ts, ev + 1),
                history_key(b"p", 3, items[::-1], ts, ev)}) == 6


def _loaded(model_dir):
    from m6rec.data import load_dataset
    from m6rec.models.io import load_model_dir

    _, meta = load_model_dir(model_dir)
    ds = load_dataset(meta["data_spec"])
    model, _ = load_model_dir(model_dir, ds)
    return ds, model


def _histories(rows):
    from m6rec.serve.engine import Engine

    return Engine._stack([(u, np.asarray(i, np.int64), np.arange(len(i), dtype=np.float64),
                           np.zeros(len(i), np.int64)) for u, i in rows])


def _post(cat, scorer, model, item_id, lm):
    pos = cat.append(item_id, item_id, [], lm)
    scorer.add(scorer.item_vector(None, lm))
    cat.publish(item_id, pos)
    return pos


@pytest.mark.parametrize("mode", ["raw", "calibrated"])
def test_vector_scorer_search_agrees_with_its_full_scores(m6_id_dir, mode):
    from m6rec.serve.vectors import VectorScorer

    ds, model = _loaded(m6_id_dir)
    cat = Catalogue.from_dataset(ds, model.item_text_)
    scorer = VectorScorer(model, cat, new_items=mode)
    assert scorer.calibrated == (mode == "calibrated")
    lm = np.asarray(model.item_text_, np.float32)
    for k in range(3):  # posted items: the texts of catalogue items 0, 9 and a mix
        _post(cat, scorer, model, f"p{k}", [lm[0], lm[9], (lm[3] + lm[12]) / 2][k])
    n = len(scorer)
    rows = [(0, [1, 2, 3]), (-1, [9, 10]), (5, [0, 16])]
    users = scorer.user_vectors(_histories(rows), n)
    queries = scorer.text_queries([np.array(r[1]) for r in rows])
    ex = [np.array(r[1]) for r in rows]
    ids, scores = scorer.search(users, queries, 5, ex, n)
    full = scorer.scores(users, queries, ex, n)
    for x in range(len(rows)):
        s = full[x].copy()
        s[ex[x]] = -np.inf
        order = np.argsort(-s, kind="stable")[:5]
        np.testing.assert_array_equal(ids[x], order)
        np.testing.assert_allclose(scores[x], s[order], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(scorer.score_items(users[x:x + 1], None if queries is None
                                                      else queries[x:x + 1], ids[x], ex[x])[0],
                                   scores[x], rtol=1e-5, atol=1e-5)
    if mode == "raw":  # plain dot products with the text-only vectors
        np.testing.assert_allclose(full[:, n - 3:], users @ scorer.vectors(
            np.arange(n - 3, n)).T, rtol=1e-5)


def test_calibrated_posted_item_is_its_text_match_on_the_users_scale(m6_id_dir):
    from m6rec.serve.vectors import NEW_ITEM_SCALE, VectorScorer

    ds, model = _loaded(m6_id_dir)
    cat = Catalogue.from_dataset(ds, model.item_text_)
    scorer = VectorScorer(model, cat)
    lm = np.asarray(model.item_text_, np.float32)
    history = np.array([3, 5, 7])  # space items
    near = _post(cat, scorer, model, "near", lm[7])  # the newest item's own text
    far = _post(cat, scorer, model, "far", lm[12])  # a kitchen item's text
    n = len(scorer)
    user = scorer.user_vectors(_histories([(-1, history)]), n)
    q = scorer.text_queries([history])
    s = scorer.scores(user, q, [history], n)[0]
    w = 0.5 ** np.arange(3)
    want_q = (w[:, None] * lm[history[::-1]]).sum(0) / w.sum()
    np.testing.assert_allclose(q[0], want_q, rtol=1e-5)
    ref = np.setdiff1d(np.arange(cat.n_base), history)
    f, m = user[0] @ scorer.vectors(ref).T, lm[ref] @ want_q
    for pos, text in ((near, lm[7]), (far, lm[12])):
        want = f.mean() + NEW_ITEM_SCALE * f.std() * (text @ want_q - m.mean()) / m.std()
        assert s[pos] == pytest.approx(want, rel=1e-4, abs=1e-4)
    assert s[near] > s[far]
    raw = VectorScorer(model, cat, new_items="raw")
    assert not raw.calibrated and len(raw) == n  # posted items re-embedded from their text


def test_text_only_model_is_served_raw(m6_dir):
    from m6rec.serve.vectors import VectorScorer

    ds, model = _loaded(m6_dir)
    scorer = VectorScorer(model, Catalogue.from_dataset(ds, model.item_text_))
    assert not scorer.calibrated and scorer.text_queries([np.array([1])]) is None
    with pytest.raises(ValueError, match="new_items"):
        VectorScorer(model, Catalogue.from_dataset(ds, model.item_text_), new_items="boost")


def test_dense_scorer_matches_the_model(ease_dir):
    from m6rec.serve.dense import DenseScorer

    ds, model = _loaded(ease_dir)
    scorer = DenseScorer(model, ds)
    h = _histories([(0, [1, 2]), (3, [9])])
    ids, scores = scorer.search(h, 4, [np.array([1, 2]), np.array([9])])
    s = model.score(h)
    for x, seen in enumerate(([1, 2], [9])):
        s[x, seen] = -np.inf
        np.testing.assert_allclose(scores[x], np.sort(s[x])[::-1][:4], rtol=1e-6)
        assert not set(ids[x]) & set(seen)
    sim, _ = scorer.similar(0, 5)
    assert 0 not in sim[0] and (sim[0] < ds.n_items).all()
    same = {i for i in sim[0] if i >= 0}
    assert same <= {int(j) for j in np.flatnonzero(np.asarray(
        (ds.csr().T @ ds.csr()[:, 0]).todense()).ravel())}  # items sharing a user with item 0


def test_query_matcher_is_text_match_and_encodes_categories_once(m6_dir):
    from m6rec.recommend import text_match
    from m6rec.serve.query import LazyEncoder, QueryMatcher

    ds, model = _loaded(m6_dir)
    cat = Catalogue.from_dataset(ds, model.item_text_)
    enc = LazyEncoder(model.encoder)
    seen = []

    def encode(texts):
        seen.extend(texts)
        return enc.encode(texts)

    matcher = QueryMatcher(encode, cat)
    got = matcher.match(("rocket stars",), len(cat))
    q = enc.encode(["rocket stars"])
    m, vocab = cat.category_matrix(len(cat))
    want = text_match(q, cat.lm, 0.5, m, q, enc.encode(vocab), 0.5)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    assert int(np.argmax(got)) < 8  # a space item
    matcher.with_catalogue(cat.copy()).match(("baking bread",), len(cat))
    assert sorted(seen) == sorted(["rocket stars", "baking bread", *vocab])  # vocab once


def test_derived_engine_is_built_from_fresh_parts(m6_dir, tmp_path):
    from m6rec.serve.engine import Engine
    from m6rec.storage import open_store

    store = open_store(f"sqlite:///{tmp_path}/ev.db")
    old = Engine(m6_dir, store)
    old.add_item("posted", {"title": "rocket galaxy voyage"})
    old.recommend("u0", 3)
    new = old.derive(old.model, 1)
    assert new.catalogue is not old.catalogue and new.scorer is not old.scorer
    assert new.catalogue.item_ids == old.catalogue.item_ids and new.model is not old.model
    assert new.user_cache is not old.user_cache and len(new.user_cache) == 0
    assert new.source is old.source and new._encoder is old._encoder
    np.testing.assert_allclose(new.scorer.vectors(np.arange(len(new.scorer))),
                               old.scorer.vectors(np.arange(len(old.scorer))), atol=1e-5)
    assert new.recommend("u0", 3) == old.recommend("u0", 3)
    old.add_item("later", {"title": "planets stars"})  # forwarded to the serving engine
    assert "later" in new.item_pos and "later" not in old.item_pos
    old.close()
    new.close()
    store.close()


def test_a_posted_item_reaches_the_user_it_fits_and_is_explained_on_its_score(m6_id_dir,
                                                                                 tmp_path):
    from m6rec.serve.engine import Engine
    from m6rec.storage import open_store

    store = open_store(f"sqlite:///{tmp_path}/ev.db")
    raw, cal = Engine(m6_id_dir, store, new_items="raw"), Engine(m6_id_dir, store)
    newest = cal.user_history("u0")["items"][0]["title"]  # a space user's newest film
    for e in (raw, cal):
        e.add_item("fresh", {"title": newest})  # the same text: the closest possible match
    assert cal.scorer.calibrated and not raw.scorer.calibrated

    def rank(e):
        ids = [i["item_id"] for i in e.recommend("u0", 16)["items"]]
        return ids.index("fresh") if "fresh" in ids else len(ids)

    assert rank(cal) <= rank(raw) and rank(cal) < 3
    got = {i["item_id"]: i for i in cal.recommend("u0", 5, explain=True)["items"]}
    assert got["fresh"]["explained_score"] == pytest.approx(got["fresh"]["score"], abs=1e-4)
    for e in (raw, cal):
        e.close()
    store.close()
