"""KG sentences must be true according to the graph: direction of sequels, shared tails only
between different films, and a seeded sample of a real model's explanations checked against the
raw triples."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from m6rec.data import from_dataframe
from m6rec.data.dataset import KnowledgeGraph
from m6rec.explain import KGRelations
from m6rec.explain.kg_check import KGChecker, sample_kg_sentences
from m6rec.explain.kg_relations import PHRASES
from m6rec.registry import build_model


def _films(triples, link):
    ids = sorted(link)
    inter = pd.DataFrame({"user_id": ["u"] * len(ids), "item_id": ids,
                          "timestamp": np.arange(len(ids), dtype=float)})
    ds = from_dataframe(inter, items=pd.DataFrame({"item_id": ids, "title": ids}), name="films")
    ents = sorted({x for h, _, t in triples for x in (h, t)} | set(link.values()))
    rels = sorted({r for _, r, _ in triples})
    e, r = {n: k for k, n in enumerate(ents)}, {n: k for k, n in enumerate(rels)}
    t = np.array([(e[h], r[x], e[tt]) for h, x, tt in triples], dtype=np.int64)
    item_entity = np.array([e[link[str(i)]] for i in ds.item_ids], dtype=np.int64)
    ds.kg = KnowledgeGraph(np.array(ents, dtype=object), np.array(rels, dtype=object), t,
                           item_entity)
    return ds


def test_a_shared_sequel_is_not_a_sequel_relation():
    # two films with one (unlinked) sequel entity are not each other's sequel
    ds = _films([("ea", "film.film.sequel", "ez"), ("eb", "film.film.sequel", "ez")],
                {"a": "ea", "b": "eb"})
    kg = KGRelations(ds)
    assert kg.between(0, 1) == [] and kg.between(1, 0) == []


def test_one_film_listed_twice_is_not_related_to_itself():
    ds = _films([("ea", "film.film.directed_by", "d"), ("eb", "film.film.directed_by", "d")],
                {"a": "ea", "a2": "ea", "b": "eb"})
    kg = KGRelations(ds)
    a, a2, b = (ds.item_index(x) for x in ("a", "a2", "b"))
    assert kg.between(a, a2) == []
    assert [r.role for r in kg.between(a2, b)] == ["director"]  # both copies have the facts


def test_every_phrase_is_read_back_by_the_checker():
    ds = _films([("ea", "film.film.sequel", "eb")], {"a": "ea", "b": "eb"})
    checker = KGChecker(ds)
    for role, text in PHRASES.items():
        assert checker.check(1, 0, text.format(title="a")).verdict != "unreadable", role


def _item(ds, title):
    [i] = [k for k, t in enumerate(ds.titles()) if t == title]
    return i


@pytest.mark.parametrize(("item", "phrase", "verdict"), [
    ("Aliens", "a sequel to Alien", "supported"),
    ("Alien", "a sequel to Aliens", "contradicted"),  # the old, reversed reading
    ("Alien", "a prequel to Aliens", "supported"),
    ("Return of the Jedi", "a sequel to Empire Strikes Back, The", "supported"),
    ("Godfather: Part II, The", "same director as Godfather, The", "supported"),
    ("Shining, The", "same director as Full Metal Jacket", "supported"),
    ("Star Wars", "same director as Empire Strikes Back, The", "contradicted"),
    ("Cinema Paradiso", "same director as Fargo", "contradicted"),
])
def test_checker_on_known_films(ml100k, item, phrase, verdict):
    other = phrase.split(" as ")[-1].split(" to ")[-1]
    checker = KGChecker(ml100k)
    assert checker.check(_item(ml100k, item), _item(ml100k, other), phrase).verdict == verdict


def test_ml100k_relations_read_the_right_way(ml100k):
    kg = KGRelations(ml100k)
    alien, aliens = _item(ml100k, "Alien"), _item(ml100k, "Aliens")
    assert kg.between(aliens, alien)[0].phrase("Alien") == "a sequel to Alien"
    assert kg.between(alien, aliens)[0].role == "prequel"
    t1, t2 = _item(ml100k, "Terminator, The"), _item(ml100k, "Terminator 2: Judgment Day")
    assert kg.between(t2, t1)[0].role == "sequel"


@pytest.fixture(scope="module")
def kg_sentences(ml100k):
    model = build_model("ease").fit(ml100k)
    return sample_kg_sentences(model, ml100k, n=60, k=10, seed=3)


def test_sampled_sentences_are_not_contradicted_by_the_graph(kg_sentences):
    rows, users = kg_sentences
    assert len(rows) == 60 and users >= 30  # spread over many users
    verdicts = [c["verdict"] for r in rows for c in r["claims"]]
    assert verdicts.count("contradicted") == 0
    assert set(verdicts) == {"supported"}
    assert all(r["in_sentence"] for r in rows)
    # more than one kind of relation is exercised
    assert len({c["relation"] for r in rows for c in r["claims"]}) >= 3
