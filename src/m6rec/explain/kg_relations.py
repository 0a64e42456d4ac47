"""Knowledge-graph relations between two items: same director, shared actor, sequel of ...

Built from a `Dataset`'s `KnowledgeGraph` (for ml-100k, KB4Rec's Freebase facts about the movies).
Only triples whose head is an item's entity are read, and only relations that say something
specific about a pair of items; very common tails (a country, a language, a content rating, a
broad genre) are left out. Two kinds of relation:

- a shared tail: both items point to one tail entity by the same relation (``film.film.directed_by``
  -> "same director as X"); the claim is that the two films' tail sets intersect;
- a direct link between the two items' entities (``film.film.sequel`` / ``film.film.prequel``).
  Freebase's ``film.film.sequel`` on film X names X's sequel, so X is the *prequel* of the tail:
  the triple (Alien, film.film.sequel, Aliens) makes Aliens "a sequel to Alien" and Alien "a
  prequel to Aliens". These relations are never read as shared tails (two films with the same
  sequel are not each other's sequel).

Items linked to one entity (a film listed twice in the catalogue) are the same film: no
relation is reported between them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from m6rec.data.dataset import Dataset

#: shared-tail relation id (as in the KG file) -> (role, rank); lower rank = more telling
ROLES: dict[str, tuple[str, int]] = {
    "film.film.directed_by": ("director", 1),
    "film.film.written_by": ("writer", 2),
    "film.film.actor": ("actor", 3),
    "film.film.cinematography": ("cinematographer", 4),
    "film.film.produced_by": ("producer", 5),
    "film.film.subjects": ("subject", 6),
    "film.film.production_companies": ("production company", 7),
}
#: direct item-to-item relation id -> the role of the triple's *head* towards its tail;
#: the tail gets the inverse role
LINKS: dict[str, str] = {"film.film.sequel": "prequel", "film.film.prequel": "sequel"}
INVERSE = {"prequel": "sequel", "sequel": "prequel"}
RANKS = {"sequel": 0, "prequel": 0, **{role: rank for role, rank in ROLES.values()}}
#: how a relation reads after the recommended item's title, ``{title}`` = the history item
PHRASES: dict[str, str] = {
    "sequel": "a sequel to {title}",
    "prequel": "a prequel to {title}",
    "director": "same director as {title}",
    "writer": "shares a writer with {title}",
    "actor": "shares an actor with {title}",
    "cinematographer": "same cinematographer as {title}",
    "producer": "shares a producer with {title}",
    "subject": "shares a subject with {title}",
    "production company": "shares a studio with {title}",
}


@dataclass(frozen=True)
class Relation:
    """``item`` relates to history item ``other`` by ``role`` through ``count`` shared tails
    (``role`` "sequel": the item is a sequel to ``other``)."""

    role: str
    other: int
    count: int = 1

    def phrase(self, title: str) -> str:
        return PHRASES[self.role].format(title=title)


class KGRelations:
    """Index of every item's (role, tail entity) facts and direct item-to-item links.

    Parameters
    ----------
    dataset : Dataset with a ``kg`` (an empty index otherwise: `between` returns nothing)
    max_tail_items : tails shared by more items than this are ignored (not telling)
    """

    def __init__(self, dataset: Dataset, max_tail_items: int = 50):
        kg = dataset.kg
        self.facts: list[dict[str, set[int]]] = [{} for _ in range(dataset.n_items)]
        self.links: list[dict[int, str]] = [{} for _ in range(dataset.n_items)]
        self.entity = np.full(dataset.n_items, -1, dtype=np.int64)
        self._best: dict[tuple[int, int], Relation | None] = {}  # memo of `related`'s lookups
        if kg is None or not len(kg.triples):
            return
        self.entity = np.asarray(kg.item_entity, dtype=np.int64)
        items_of: dict[int, list[int]] = {}
        for i in np.nonzero(self.entity >= 0)[0].tolist():
            items_of.setdefault(int(self.entity[i]), []).append(i)
        rel_ids = [str(r) for r in kg.relation_ids]
        h, r, t = kg.triples[:, 0], kg.triples[:, 1], kg.triples[:, 2]
        linked = np.zeros(kg.n_entities, dtype=bool)
        linked[list(items_of)] = True
        # tails shared by too many items say nothing specific
        counts = np.bincount(t[linked[h] & ~linked[t]], minlength=kg.n_entities)
        for rel_idx, rel in enumerate(rel_ids):
            if rel not in ROLES and rel not in LINKS:
                continue
            sel = (r == rel_idx) & linked[h]
            for head, tail in zip(h[sel].tolist(), t[sel].tolist(), strict=True):
                if rel in LINKS:
                    if head == tail or tail not in items_of:
                        continue
                    role = LINKS[rel]
                    for i in items_of[head]:
                        for j in items_of[tail]:
                            self.links[i][j] = role
                            self.links[j].setdefault(i, INVERSE[role])
                elif counts[tail] <= max_tail_items and tail not in items_of:
                    role = ROLES[rel][0]
                    for i in items_of[head]:
                        self.facts[i].setdefault(role, set()).add(tail)

    def between(self, item: int, other: int) -> list[Relation]:
        """Relations of ``item`` to ``other``, most telling first (empty when there are none)."""
        out: list[Relation] = []
        if item == other or (self.entity[item] >= 0 and self.entity[item] == self.entity[other]):
            return out  # the same film
        role = self.links[item].get(other)
        if role is not None:
            out.append(Relation(role, other))
        a, b = self.facts[item], self.facts[other]
        for role in a.keys() & b.keys():
            n = len(a[role] & b[role])
            if n:
                out.append(Relation(role, other, n))
        return sorted(out, key=_rank)

    def related(self, item: int, others: np.ndarray | list[int], top: int = 2) -> list[Relation]:
        """The most telling relations of ``item`` to any of ``others`` (in their order of
        preference), at most one per other item and ``top`` in all. Items outside the
        dataset's catalogue (posted to the service later) have no KG facts."""
        found = []
        n = len(self.facts)
        if not 0 <= item < n:
            return []
        best = self._best
        if len(best) > _MEMO:
            best.clear()
        for pos, o in enumerate(int(x) for x in others):
            if o == item or not 0 <= o < n:
                continue
            rel = best.get((item, o), _UNSEEN)
            if rel is _UNSEEN:  # the index never changes: each pair is looked up once
                found_rel = self.between(item, o)
                rel = best[item, o] = found_rel[0] if found_rel else None
            if rel is not None:
                found.append((_rank(rel), pos, rel))
        found.sort(key=lambda x: (x[0], x[1]))
        return [r for _, _, r in found[:top]]


_UNSEEN = object()
#: most (item, other item) pairs whose best relation `KGRelations.related` keeps
_MEMO = 1_000_000


def _rank(rel: Relation) -> tuple[int, int]:
    return RANKS.get(rel.role, 99), -rel.count
