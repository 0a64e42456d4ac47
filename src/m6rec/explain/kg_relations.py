"""Knowledge-graph relations between two items: same director, same actor, sequel of ...

Built from a `Dataset`'s `KnowledgeGraph` (for ml-100k, RecBole's KB4Rec mapping of the movies to
Freebase). Only triples whose head is an item's entity are read, and only relations that say
something specific about a pair of items (a shared director, writer, actor, ...); very common
tails (a country, a language, a content rating, a broad genre) are left out. A relation between
two items is reported when both point to the same tail entity, or when one item's entity is the
other's tail (``film.film.sequel``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from m6rec.data.dataset import Dataset

#: relation id (as in the KG file) -> (role, rank); lower rank = more telling
ROLES: dict[str, tuple[str, int]] = {
    "film.film.sequel": ("sequel", 0),
    "film.film.prequel": ("prequel", 0),
    "film.film.directed_by": ("director", 1),
    "film.film.written_by": ("writer", 2),
    "film.film.actor": ("actor", 3),
    "film.film.cinematography": ("cinematographer", 4),
    "film.film.produced_by": ("producer", 5),
    "film.film.subjects": ("subject", 6),
    "film.film.production_companies": ("production company", 7),
}
#: how a relation reads in a sentence, ``{title}`` = the history item
PHRASES: dict[str, str] = {
    "sequel": "a sequel to {title}",
    "prequel": "a prequel to {title}",
    "director": "same director as {title}",
    "writer": "same writer as {title}",
    "actor": "shares an actor with {title}",
    "cinematographer": "same cinematographer as {title}",
    "producer": "same producer as {title}",
    "subject": "same subject as {title}",
    "production company": "same studio as {title}",
}


@dataclass(frozen=True)
class Relation:
    """``item`` relates to history item ``other`` by ``role`` through ``count`` shared tails."""

    role: str
    other: int
    count: int = 1

    def phrase(self, title: str) -> str:
        return PHRASES.get(self.role, "related to {title} (" + self.role + ")").format(title=title)


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
        if kg is None or not len(kg.triples):
            return
        entity_item = np.full(kg.n_entities, -1, dtype=np.int64)
        linked = np.nonzero(kg.item_entity >= 0)[0]
        entity_item[kg.item_entity[linked]] = linked
        role_of = np.array([ROLES.get(str(r), ("", 99))[0] for r in kg.relation_ids], dtype=object)
        h, r, t = kg.triples[:, 0], kg.triples[:, 1], kg.triples[:, 2]
        head_item = entity_item[h]
        keep = (head_item >= 0) & (role_of[r] != "")
        head_item, r, t = head_item[keep], r[keep], t[keep]
        tail_item = entity_item[t]
        # tails shared by too many items say nothing specific
        counts = np.bincount(t[tail_item < 0], minlength=kg.n_entities)
        for i, rel, tail, ti in zip(head_item.tolist(), r.tolist(), t.tolist(),
                                    tail_item.tolist(), strict=True):
            role = role_of[rel]
            if ti >= 0:  # a direct item-item link (sequel / prequel)
                if ti != i:
                    self.links[i][ti] = role
                    inverse = {"sequel": "prequel", "prequel": "sequel"}.get(role, role)
                    self.links[ti].setdefault(i, inverse)
            elif counts[tail] <= max_tail_items:
                self.facts[i].setdefault(role, set()).add(tail)

    def between(self, item: int, other: int) -> list[Relation]:
        """Relations of ``item`` to ``other``, most telling first (empty when there are none)."""
        out = []
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
        for pos, o in enumerate(int(x) for x in others):
            if o == item or not 0 <= o < n:
                continue
            rel = self.between(item, o)
            if rel:
                found.append((_rank(rel[0]), pos, rel[0]))
        found.sort(key=lambda x: (x[0], x[1]))
        return [r for _, _, r in found[:top]]


def _rank(rel: Relation) -> tuple[int, int]:
    rank = next((k for role, k in ROLES.values() if role == rel.role), 99)
    return rank, -rel.count
