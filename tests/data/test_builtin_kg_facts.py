"""Well-known film facts must hold in the built-in ml-100k knowledge graph (links + triples).

These fail on links in another dataset's id space (as RecBole's original ml-100k ``.link`` was:
keyed by MovieLens-1M ids), so they test the links, not only that some pairs exist.
"""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="module")
def kg(ml100k):
    return ml100k.kg


def _entity(ds, item_id: str) -> int:
    e = int(ds.kg.item_entity[ds.item_index(item_id)])
    assert e >= 0, f"ml-100k item {item_id} has no entity"
    return e


def _tails(kg, head: int, relation: str) -> set[int]:
    r = list(kg.relation_ids).index(relation)
    t = kg.triples
    return set(t[(t[:, 0] == head) & (t[:, 1] == r), 2].tolist())


# (prequel, sequel) in ml-100k item ids: Star Wars -> Empire -> Jedi, Godfather I -> II,
# Alien -> Aliens, Terminator -> Terminator 2
SEQUELS = [("50", "172"), ("172", "181"), ("127", "187"), ("183", "176"), ("195", "96")]


@pytest.mark.parametrize(("first", "second"), SEQUELS)
def test_sequel_chains_point_the_right_way(ml100k, kg, first, second):
    a, b = _entity(ml100k, first), _entity(ml100k, second)
    assert b in _tails(kg, a, "film.film.sequel")  # film.film.sequel on X names X's sequel
    assert a in _tails(kg, b, "film.film.prequel")
    assert a not in _tails(kg, b, "film.film.sequel")


def test_titles_behind_the_sequel_pairs(ml100k):
    titles = {i: ml100k.titles()[ml100k.item_index(i)] for pair in SEQUELS for i in pair}
    assert titles["50"] == "Star Wars" and titles["181"] == "Return of the Jedi"
    assert titles["187"] == "Godfather: Part II, The" and titles["96"].startswith("Terminator 2")


def test_kubrick_films_share_one_director(ml100k, kg):
    # 2001, A Clockwork Orange, Full Metal Jacket, The Shining, Dr. Strangelove, Paths of Glory
    kubrick = ["135", "179", "188", "200", "474", "641"]
    directors = [_tails(kg, _entity(ml100k, i), "film.film.directed_by") for i in kubrick]
    shared = set.intersection(*directors)
    assert [str(kg.entity_ids[e]) for e in shared] == ["m.06mn7"]  # Freebase: Stanley Kubrick
    # and no other ml-100k film has him as director
    others = [i for i in range(ml100k.n_items) if str(ml100k.item_ids[i]) not in kubrick
              and kg.item_entity[i] >= 0
              and shared & _tails(kg, int(kg.item_entity[i]), "film.film.directed_by")]
    assert others == []


def test_toy_story_director_and_star(ml100k, kg):
    toy = _entity(ml100k, "1")
    assert str(kg.entity_ids[toy]) == "m.0dyb1"  # Freebase: Toy Story
    names = {str(kg.entity_ids[e]) for e in _tails(kg, toy, "film.film.directed_by")}
    assert names == {"m.04jspq"}  # John Lasseter
    assert "m.0bxtg" in {str(kg.entity_ids[e]) for e in _tails(kg, toy, "film.film.actor")}  # Tom Hanks


def test_different_films_have_different_directors(ml100k, kg):
    # Star Wars (George Lucas) and The Empire Strikes Back (Irvin Kershner); The Godfather and
    # Part II both Francis Ford Coppola
    sw, esb = _entity(ml100k, "50"), _entity(ml100k, "172")
    assert not _tails(kg, sw, "film.film.directed_by") & _tails(kg, esb, "film.film.directed_by")
    g1, g2 = _entity(ml100k, "127"), _entity(ml100k, "187")
    assert _tails(kg, g1, "film.film.directed_by") & _tails(kg, g2, "film.film.directed_by")


def test_links_are_ml100k_items(ml100k, kg):
    linked = kg.item_entity >= 0
    assert int(linked.sum()) == 1534
    # an entity is shared only by ml-100k's duplicate entries of one film (same title)
    ents, counts = np.unique(kg.item_entity[linked], return_counts=True)
    titles = ml100k.titles()
    for e in ents[counts > 1]:
        items = np.nonzero(kg.item_entity == e)[0]
        assert len({str(titles[i]).lower() for i in items}) == 1, [titles[i] for i in items]
