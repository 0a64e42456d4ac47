"""Explanations: contributions measured on the model, shares, categories, KG relations, text."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from m6rec.data import from_dataframe
from m6rec.data.dataset import KnowledgeGraph
from m6rec.data.histories import Histories
from m6rec.explain import Explainer, KGRelations, explain_items, history_contributions, sentence
from m6rec.registry import build_model


def _one(items, user=-1):
    items = np.asarray(items, dtype=np.int64)
    return Histories(np.array([0, len(items)], np.int64), items, np.array([user], np.int64))


def test_contributions_of_a_linear_model_are_its_terms(checkerboard):
    model = build_model("itemknn", k=20).fit(checkerboard)
    hist = checkerboard.histories(np.array([0])).row(0)
    ids, _ = model.recommend(_one(hist), k=3)
    tested, contrib = history_contributions(model, hist, ids[0], max_history=len(hist))
    sim = model.similarity_.toarray()
    np.testing.assert_allclose(contrib, sim[np.ix_(tested, ids[0])], rtol=1e-5, atol=1e-6)


def test_explanation_cites_the_items_that_raise_the_score(checkerboard):
    model = build_model("itemknn", k=20).fit(checkerboard)
    sim = model.similarity_.toarray()
    for uid in ("u0", "u2", "u4"):  # even users; their top item is their withheld item
        u = checkerboard.user_index(uid)
        hist = checkerboard.histories(np.array([u])).row(0)
        ids, _ = model.recommend(_one(hist), k=1)
        [ex] = Explainer(model, checkerboard, top=2).explain(hist, ids[0])
        item = ids[0][0]
        assert checkerboard.item_ids[item] == "i" + uid[1:]
        assert ex.method == "leave-one-out" and 1 <= len(ex.history) <= 2
        best = hist[np.argmax(sim[hist, item])]
        assert ex.history[0]["item_id"] == str(checkerboard.item_ids[best])
        assert ex.history[0]["delta"] >= ex.history[-1]["delta"] > 0
        assert 0 < sum(h["share"] for h in ex.history) <= 1.0 + 1e-6
        # an even user: the cited items and the item share the "even" category
        assert [c["name"] for c in ex.categories] == ["even"]
        assert ex.categories[0]["share"] == pytest.approx(1.0)
        assert ex.sentence.startswith("Because you interacted with ") and "like even" in ex.sentence
        json.dumps(ex.to_dict())  # JSON-able for the service / CLI


def test_removing_cited_items_lowers_m6_score_more_than_random(checkerboard, tiny_m6):
    rng = np.random.default_rng(0)
    cited_drops, random_drops = [], []
    explainer = Explainer(tiny_m6, checkerboard, top=3)
    for u in range(0, 50, 5):
        hist = checkerboard.histories(np.array([u])).row(0)
        ids, _ = tiny_m6.recommend(_one(hist), k=2)
        for item, ex in zip(ids[0], explainer.explain(hist, ids[0]), strict=True):
            cited = [checkerboard.item_index(c) for c in ex.cited]
            rows = [hist, hist[~np.isin(hist, cited)]]
            rows += [np.delete(hist, rng.choice(len(hist), len(cited), replace=False))
                     for _ in range(5)]
            lengths = [len(r) for r in rows]
            h = Histories(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
                          np.concatenate(rows), np.full(len(rows), -1, np.int64))
            s = tiny_m6.score(h, np.array([item]))[:, 0]
            cited_drops.append(s[0] - s[1])
            random_drops.append(np.mean(s[0] - s[2:]))
    assert np.mean(cited_drops) > 0
    assert np.mean(cited_drops) > 2 * np.mean(random_drops)


def test_empty_history_explains_popularity(checkerboard):
    model = build_model("pop").fit(checkerboard)
    [ex] = Explainer(model, checkerboard).explain(np.zeros(0, np.int64), np.array([3]))
    assert ex.method == "none" and ex.history == [] and "Popular" in ex.sentence


def test_explain_items_keeps_the_old_keys(checkerboard):
    model = build_model("ease", reg=10.0).fit(checkerboard)
    hist = checkerboard.histories(np.array([1])).row(0)
    out = explain_items(model, checkerboard, hist, np.array([1]))
    assert {"because", "history", "shared_categories", "relations"} <= set(out[0])
    assert all(set(h) >= {"item_id", "title", "share"} for h in out[0]["history"])


def test_explainer_rejects_bad_settings(checkerboard):
    model = build_model("pop").fit(checkerboard)
    with pytest.raises(ValueError, match="top"):
        Explainer(model, checkerboard, top=0)


# -- knowledge graph -------------------------------------------------------------------------
def _kg_dataset():
    inter = pd.DataFrame({"user_id": ["u"] * 4, "item_id": ["a", "b", "c", "d"],
                          "timestamp": [1.0, 2.0, 3.0, 4.0]})
    items = pd.DataFrame({"item_id": ["a", "b", "c", "d"],
                          "title": ["Alien", "Aliens", "Titanic", "Heat"]})
    ds = from_dataframe(inter, items=items, name="films")
    ents = np.array(["ea", "eb", "ec", "ed", "cameron", "scott", "usa", "actor1"], dtype=object)
    rels = np.array(["film.film.directed_by", "film.film.sequel", "film.film.country",
                     "film.film.actor"], dtype=object)
    e = {n: k for k, n in enumerate(ents)}
    r = {n: k for k, n in enumerate(rels)}
    triples = [("eb", "film.film.directed_by", "cameron"), ("ec", "film.film.directed_by", "cameron"),
               ("ea", "film.film.directed_by", "scott"), ("ea", "film.film.sequel", "eb"),
               ("ea", "film.film.country", "usa"), ("eb", "film.film.country", "usa"),
               ("eb", "film.film.actor", "actor1"), ("ed", "film.film.actor", "actor1")]
    t = np.array([(e[h], r[x], e[tt]) for h, x, tt in triples], dtype=np.int64)
    link = {"a": "ea", "b": "eb", "c": "ec", "d": "ed"}
    item_entity = np.array([e[link[str(i)]] for i in ds.item_ids], dtype=np.int64)
    ds.kg = KnowledgeGraph(ents, rels, t, item_entity)
    return ds


def test_kg_relations_between_items():
    ds = _kg_dataset()
    kg = KGRelations(ds)
    a, b, c, d = (ds.item_index(x) for x in "abcd")
    assert [r.role for r in kg.between(b, c)] == ["director"]
    # (Alien, film.film.sequel, Aliens): Alien's sequel is Aliens, so Alien is the prequel
    assert [r.role for r in kg.between(a, b)] == ["prequel"]  # the country is not telling
    assert [r.role for r in kg.between(b, a)] == ["sequel"]
    assert kg.between(b, a)[0].phrase("Alien") == "a sequel to Alien"
    assert kg.between(a, b)[0].phrase("Aliens") == "a prequel to Aliens"
    assert kg.between(a, c) == []
    assert kg.related(b, [d, c])[0].role == "director"  # the director beats a shared actor
    assert kg.between(b, c)[0].phrase("Titanic") == "same director as Titanic"


def test_kg_relations_on_ml100k_use_linked_items(ml100k):
    kg = KGRelations(ml100k)
    pairs = sum(1 for i in range(200) for j in range(200) if i != j and kg.between(i, j))
    assert pairs > 0
    assert kg.related(0, [0]) == []  # an item is never related to itself


def test_sentence_template():
    from m6rec.explain import Explanation

    ex = Explanation("1", "X", 1.0, "leave-one-out",
                     history=[{"title": "Alien"}, {"title": "Aliens"}],
                     categories=[{"name": "Sci-Fi"}, {"name": "Horror"}],
                     relations=[{"phrase": "same director as Titanic"}])
    assert (sentence(ex) == "Because you watched Alien and Aliens and like Sci-Fi and Horror; "
            "same director as Titanic.")
